"""Helpers of the annotation tests: a small knowledge file, a served app in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ground import records as R
from kgen.parse import parse_answer

ROOT = Path(__file__).resolve().parents[2]
POOL = ROOT / "prompts" / "pool_items.jsonl"
XSS_NAME = 'Mug <script>alert(1)</script> with <b>bold</b> "quotes" & <img src=x onerror=alert(2)>'
XSS_PHRASE = "<b>bold</b>"
ACCOUNTS = {"alice": "pw-alice", "bob": "pw-bob", "carol": "pw-carol"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
# UCI Online Retail style StockCodes.
IDS = ["85123A", "71053", "84406B", "22423", "47566", "84879", "22720", "21212", "85099B", "22086", "84029E", "20725",
       "22457", "21034"]


def knowledge_records(n_pool: int = 5) -> list[dict]:
    """Knowledge records made from the shipped reference answers, plus one full of HTML and script."""
    rows = []
    for i, line in enumerate(POOL.read_text(encoding="utf-8").splitlines()[:n_pool]):
        ref = json.loads(line)
        parsed = parse_answer(ref["answer"])
        item_id = IDS[i] if i < len(IDS) else f"9{i:04d}"
        rows.append({R.ID: item_id, R.LEVEL: "item", R.INPUT: ref["input"], R.EXPLICIT: parsed.explicit,
                     R.IMPLICIT: parsed.implicit, R.KEY_PHRASES: parsed.key_phrases, R.RAW: ref["answer"],
                     R.MODEL: "fake-teacher", R.STATUS: "ok"})
    raw = (f"Explicit Information:\nType: Mug. The name says <script>alert(3)</script> mug.\n"
           f"Implicit Information:\nStyle: Bold. It says {XSS_PHRASE}.\nKey Features: Mug, {XSS_PHRASE}, Gift")
    rows.append({R.ID: "X<1>", R.LEVEL: "item", R.INPUT: XSS_NAME,
                 R.EXPLICIT: [{R.ASPECT: "Type", R.VALUE: "Mug", R.RATIONALE: "<script>alert(3)</script>"}],
                 R.IMPLICIT: [{R.ASPECT: "Style", R.VALUE: XSS_PHRASE, R.RATIONALE: "bold"}],
                 R.KEY_PHRASES: ["Mug", XSS_PHRASE, "Gift"], R.RAW: raw, R.MODEL: "fake-teacher", R.STATUS: "ok"})
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 180.0) -> None:
    """Wait until something listens on the port (generous: the CPU is shared)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def serve_command(knowledge: Path, db: Path, port: int, *extra: str) -> list[str]:
    """The `annotate serve` command line with the test accounts (carol reviews)."""
    auth = [arg for user, pw in ACCOUNTS.items() for arg in ("--auth", f"{user}:{pw}")]
    return [sys.executable, "-m", "annotate", "serve", "--input", str(knowledge), "--db", str(db), "--port", str(port),
            *auth, "--reviewer", "carol", *extra]


def start_server(knowledge: Path, db: Path, *extra: str, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`annotate serve` in a subprocess (on a free port unless given); returns (process, url) once it listens."""
    port = port or free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(serve_command(knowledge, db, port, *extra), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/"


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- driving the page in a browser (Playwright) ---------------------------------
TIMEOUT_MS = 120_000  # the CPU is shared: be patient, never assert on speed
VIEWPORT = {"width": 1280, "height": 900}


def open_page(browser, url, user):
    """A fresh browser context logged in as `user` through the log-in form; dialogs are recorded, not accepted."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    log_in(page, url, user)
    return page


def log_in(page, url, user):
    """Go to the app and log in through its form; returns once the page is drawn."""
    # Wait for the document, not for its "load" event: the form below is what the test needs, and once a CI run
    # sat 120 s in "load" on the restarted server (test_a_key_typed_while_the_server_is_down...) with no error.
    from playwright.sync_api import Error as PlaywrightError

    # Leave the old document first: after a restart its Gradio streams to the same host can hold Chrome's six
    # connections per host, and a navigation queued behind them waited out the 120 s (1 run in 3 at 2026-12-07's
    # HEAD). about:blank needs no connection, ends those streams, and keeps the tab's sessionStorage (the unsent keys).
    page.goto("about:blank")
    for attempt in range(3):
        try:
            page.goto(url, wait_until="domcontentloaded")
            break
        except PlaywrightError as exc:
            # A page that finds its restarted server again may start a navigation of its own, which aborts
            # ours (net::ERR_ABORTED, seen once at load 14); going again lands on the same log-in form.
            if "ERR_ABORTED" not in str(exc) or attempt == 2:
                raise
    page.locator("input[type=password]").wait_for()
    page.locator("input:not([type=password])").first.fill(user)
    page.locator("input[type=password]").fill(ACCOUNTS[user])
    page.keyboard.press("Enter")
    page.locator("#ann-main").wait_for(state="attached")


def main_data(page, name):
    return page.locator("#ann-main").get_attribute(f"data-{name}")


def wait_main(page, name, value):
    """Wait until the rendered item card carries data-<name> == value."""
    page.wait_for_function("([n, v]) => document.querySelector('#ann-main')?.getAttribute('data-' + n) === v",
                           arg=[name, str(value)])


def keys(page, *presses):
    for key in presses:
        page.keyboard.press(key)


def decisions(page):
    return page.locator("#ann-main tr.ann-row td .d").all_inner_texts()
