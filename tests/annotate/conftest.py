"""Fixtures of the annotation tests: a knowledge file, a served app, a browser."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from annotate_helpers import CHROMIUM, CHROMIUM_ARGS, ROOT, TIMEOUT_MS, knowledge_records, start_server, stop_server
from ground.files import write_jsonl


@pytest.fixture
def knowledge_file(tmp_path: Path) -> Path:
    path = tmp_path / "knowledge.jsonl"
    write_jsonl(path, knowledge_records())
    return path


@pytest.fixture
def server(tmp_path: Path, knowledge_file: Path):
    """A served app where every item goes to both alice and bob; carol reviews. Yields (url, db path)."""
    db = tmp_path / "gold.sqlite"
    proc, url = start_server(knowledge_file, db, "--per-item", "2")
    yield url, db
    stop_server(proc)


@pytest.fixture
def browser():
    """Debian's chromium driven by Playwright (never `playwright install`); installed first if missing."""
    if not Path(CHROMIUM).exists():
        done = subprocess.run(["bash", str(ROOT / "scripts" / "test_deps.sh")], capture_output=True, text=True)
        if not Path(CHROMIUM).exists():
            pytest.fail(f"no {CHROMIUM} and scripts/test_deps.sh could not install it: {done.stderr.strip()[-300:]}")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # not the default 5 s: the CPU is shared, wait on state however long
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
