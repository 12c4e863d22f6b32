"""Take the README's screenshot of the annotation screen: `python tests/annotate/make_screenshot.py [out.png]`.

Serves the app on knowledge records made from the shipped reference answers, logs in as an
annotator, does a little work with the keyboard and captures the page at 1280x900.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from annotate_helpers import ACCOUNTS, CHROMIUM, CHROMIUM_ARGS, ROOT, knowledge_records, start_server, stop_server  # noqa: E402
from ground.files import write_jsonl


IDLE = "() => !window.__annState.sent.length && !window.__annState.waiting.length"  # the server has every key


def annotate_a_little(page) -> None:
    """Two items submitted, then work in progress on the third (Heinz soup): decisions, an edit, an addition."""
    for i in range(2):
        page.keyboard.press("Shift+A")
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => document.querySelector('.ann-progress b')?.textContent === '{i + 1}'")
        page.wait_for_function(IDLE)
    page.keyboard.press("a")  # Heinz
    page.keyboard.press("e")  # Tomato Soup -> Cream of Tomato Soup
    page.keyboard.type("Cream of Tomato Soup")
    page.keyboard.press("Enter")
    for key in ("j", "x", "a", "a"):  # reject "Cream of Tomato" (now a duplicate), accept 400g, Family Favourite
        page.keyboard.press(key)
    page.keyboard.press("n")
    page.keyboard.type("Comfort Food")
    page.keyboard.press("Enter")
    page.wait_for_function(IDLE)
    page.keyboard.press("k")
    page.keyboard.press("k")
    page.keyboard.press("g")
    page.locator("#ann-reasoning .ann-raw").wait_for()


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        knowledge = Path(tmp) / "knowledge.jsonl"
        write_jsonl(knowledge, knowledge_records(n_pool=14)[:-1])  # the sample-like items, no XSS probe
        proc, url = start_server(knowledge, Path(tmp) / "gold.sqlite", "--per-item", "2")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                page.locator("input:not([type=password])").first.fill("alice")
                page.locator("input[type=password]").fill(ACCOUNTS["alice"])
                page.keyboard.press("Enter")
                page.locator("#ann-main").wait_for(timeout=120_000)
                annotate_a_little(page)
                page.screenshot(path=str(out))
                browser.close()
        finally:
            stop_server(proc)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "annotate_screen.png")
