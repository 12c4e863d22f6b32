"""`kgen generate` end to end with the embedded teacher (real SmolLM2, real MiniLM, real prompts)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ground.records import read_records

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"


@pytest.mark.integration
@pytest.mark.parametrize("level,n", [("item", 3), ("user", 2)])
def test_embedded_teacher_writes_one_record_per_row(tmp_path, level, n):
    out = tmp_path / f"{level}.jsonl"
    src = SAMPLE / ("items.jsonl" if level == "item" else "users.jsonl")
    cmd = [sys.executable, "-m", "kgen.cli", "generate", "--level", level, "-i", str(src), "-o", str(out),
           "--items", str(SAMPLE / "items.jsonl"), "--limit", str(n), "--max-new-tokens", "96", "--batch-size", "4"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = read_records(out, "knowledge")
    assert len(rows) == n and len({r["id"] for r in rows}) == n
    for row in rows:
        assert row["status"] in ("ok", "parse_error", "truncated")
        assert row["raw"] and row["reference_id"].startswith("pool-")
        assert row["model"] == "transformers:smollm2-135m-instruct"
        if row["status"] == "ok":
            assert row["key_phrases"]
    info = json.loads(out.with_name(f"{level}.run.json").read_text())
    assert info["metrics"]["generated"] == n and info["config"]["level"] == level
    # Running again finds everything done and calls no model.
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert '"skipped_done": %d' % n in again.stdout
