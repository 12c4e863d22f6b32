"""Must show 2: the app in a real browser (Debian's chromium through Playwright), keyboard first."""

import json
import re

import pytest
from playwright.sync_api import expect

from annotate.gold import gold_records
from annotate.store import Store
from annotate_helpers import (
    IDS,
    TIMEOUT_MS,
    XSS_NAME,
    XSS_PHRASE,
    decisions,
    keys,
    knowledge_records,
    main_data,
    open_page,
    start_server,
    stop_server,
    wait_main,
)
from ground.files import write_jsonl
from ground import records as R

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    write_jsonl(tmp / "knowledge.jsonl", knowledge_records())
    proc, url = start_server(tmp / "knowledge.jsonl", tmp / "gold.sqlite", "--per-item", "2")
    yield url, Store(tmp / "gold.sqlite")
    stop_server(proc)


def test_keyboard_only_annotation_survives_a_reload(served, browser):
    url, store = served
    page = open_page(browser, url, "alice")
    first, second = f"item:{IDS[0]}", f"item:{IDS[1]}"
    wait_main(page, "key", first)
    keys(page, "a", "x", "j")  # accept row 1, reject row 2, skip row 3, now on row 4 ("200g")
    keys(page, "e")
    page.keyboard.type("Two Hundred Grams")
    keys(page, "Enter", "k", "t")  # back to row 3, switch its type
    keys(page, "n")
    page.keyboard.type("Morning Coffee")
    keys(page, "Enter", "u")  # add, then undo the add
    keys(page, "n")
    page.keyboard.type("ax")  # keys are text while typing: no accept, no reject
    keys(page, "Escape", "n")
    page.keyboard.type("Arabica")
    keys(page, "Tab", "e", "Enter")  # Tab to the type, e for explicit, Enter adds
    wait_main(page, "version", 7)
    keys(page, "?")
    assert page.locator("#ann-help").is_visible()
    keys(page, "Escape")
    assert not page.locator("#ann-help").is_visible()
    keys(page, "Shift+A", "Enter")  # accept the rest, submit and go on
    wait_main(page, "key", second)

    saved = store.annotation(first, "alice")
    assert saved.status == "submitted" and saved.version == 9
    rows = saved.doc["rows"]
    assert [r["decision"] for r in rows] == ["accept", "reject", "accept", "edit", "accept", "accept", "accept",
                                             "accept", "add"]
    assert rows[3]["phrase"] == "Two Hundred Grams" and rows[3]["origin"] == "200g"
    assert rows[2]["type"] == "implicit"  # "Coffee Beans" was explicit
    assert rows[8]["phrase"] == "Arabica" and rows[8]["type"] == "explicit"
    assert all(r["phrase"] != "Morning Coffee" for r in rows)
    assert all(r["phrase"] != "ax" for r in rows)

    keys(page, "a", "a")  # a draft on the second item
    wait_main(page, "version", 2)
    page.reload()
    page.locator("#ann-main").wait_for()
    wait_main(page, "key", second)  # resumed where the work is
    assert main_data(page, "version") == "2"
    assert decisions(page)[:3] == ["✓ accepted", "✓ accepted", "pending"]
    assert " ".join(page.locator(".ann-progress").inner_text().split()) == "1 / 6 done"
    keys(page, "[")  # back to the submitted item: the work is there
    wait_main(page, "key", first)
    assert "Two Hundred Grams" in page.locator("#ann-main").inner_text()
    assert "submitted · v9" in page.locator(".ann-badge").inner_text()
    assert not page.dialogs
    # no run history kept in the browser, and no run-history page
    assert page.evaluate("() => localStorage.length") == 0
    assert page.evaluate("async () => (await indexedDB.databases()).length") == 0
    assert page.request.get(url + "gradio_api/runs").status == 404


def test_keys_typed_while_a_request_is_in_flight_go_together_in_the_next(served, browser):
    """One request in flight per page: two answers in flight could be drawn in the wrong order."""
    url, store = served
    page = open_page(browser, url, "bob")
    key = f"item:{IDS[0]}"
    wait_main(page, "key", key)
    batches, held = [], []

    def hold(route):
        data = (route.request.post_data_json or {}).get("data") or [None]
        if not (isinstance(data[0], str) and data[0].startswith("[")):
            route.continue_()  # another event of the page (the review tab's list, set at load)
            return
        batch = json.loads(data[0])
        batches.append([(c["op"], c["seq"]) for c in batch])
        if len(batches) == 1:
            held.append(route)  # the first request hangs until released below
        else:
            route.continue_()

    page.route("**/gradio_api/queue/join*", hold)
    keys(page, "a")
    for _ in range(TIMEOUT_MS // 50):  # until the request reaches the network (the route runs while Playwright waits)
        if held:
            break
        page.wait_for_timeout(50)
    keys(page, "x", "a")
    page.wait_for_function("() => window.__annState.waiting.length === 2")  # the two later keys wait on the page
    assert batches == [[("accept", 0)]]
    sync = page.locator("#ann-sync")
    assert sync.get_attribute("data-state") in ("busy", "slow")
    expect(sync).to_have_attribute("data-state", "slow", timeout=TIMEOUT_MS)
    assert sync.inner_text() == "waiting for the server…"
    held[0].continue_()
    wait_main(page, "version", 3)
    expect(sync).to_have_attribute("data-state", "idle", timeout=TIMEOUT_MS)
    assert sync.inner_text() == "✓ up to date"
    assert batches == [[("accept", 0)], [("reject", 1), ("accept", 2)]]
    assert decisions(page)[:3] == ["✓ accepted", "✗ rejected", "✓ accepted"]
    assert [r["decision"] for r in store.annotation(key, "bob").doc["rows"][:3]] == ["accept", "reject", "accept"]
    page.unroute("**/gradio_api/queue/join*")


def test_two_users_on_one_item_and_the_reviewer(served, browser):
    url, store = served
    key = f"item:{IDS[2]}"
    alice, bob = open_page(browser, url, "alice"), open_page(browser, url, "bob")
    for page in (alice, bob):
        page.locator(f"[data-goto='{key}']").click()
        wait_main(page, "key", key)
    keys(alice, "Shift+A")
    keys(bob, "x", "Shift+A")
    wait_main(alice, "version", 1)
    wait_main(bob, "version", 2)
    assert decisions(alice)[0] == "✓ accepted" and decisions(bob)[0] == "✗ rejected"  # each sees their own
    keys(alice, "Enter")
    keys(bob, "Enter")
    wait_main(alice, "key", f"item:{IDS[3]}")
    wait_main(bob, "key", f"item:{IDS[3]}")
    assert store.annotation(key, "alice").doc != store.annotation(key, "bob").doc

    second_tab = alice.context.new_page()  # alice again, in a second tab of the same browser
    second_tab.set_default_timeout(TIMEOUT_MS)
    second_tab.goto(url)
    for page in (alice, second_tab):
        page.locator(f"[data-goto='item:{IDS[4]}']").click()
        wait_main(page, "key", f"item:{IDS[4]}")
    keys(alice, "a")
    wait_main(alice, "version", 1)
    keys(second_tab, "x")
    second_tab.locator(".ann-msg.lvl-error").wait_for()
    assert "changed in another tab" in second_tab.locator(".ann-msg").inner_text()
    assert store.annotation(f"item:{IDS[4]}", "alice").doc["rows"][0]["decision"] == "accept"

    carol = open_page(browser, url, "carol")
    expect(carol.get_by_role("tab", name="Review")).to_have_attribute("aria-selected", "true", timeout=TIMEOUT_MS)
    carol.get_by_label("Item").click()
    carol.get_by_role("option", name=f"{IDS[2]} — needs review").click()
    carol.locator(".rv-col").nth(1).wait_for()
    assert sorted(carol.locator(".rv-col h4").all_inner_texts()) == ["alice submitted", "bob submitted"]
    gold = carol.locator("#rv-gold textarea")
    expect(gold).to_have_value("", timeout=TIMEOUT_MS)  # nothing is gold before the reviewer picks
    expect(carol.locator(".rv-cands li", has_text="Heinz")).to_contain_text("1/2 (alice)")
    carol.get_by_role("radio", name="bob").check()
    expect(gold).to_have_value(re.compile(r"^explicit: Tomato Soup$", re.M), timeout=TIMEOUT_MS)
    assert "Heinz" not in gold.input_value()  # bob's set is loaded: the phrase he rejected stays out
    carol.get_by_label("Reason for this choice").fill("the brand is not a selling point here")
    carol.get_by_role("button", name="Save gold").click()
    carol.get_by_text(f"gold saved for {key}").wait_for()
    gold = {g[R.ID]: g for g in gold_records(store.snapshot())[0]}
    bobs_final = [r["phrase"] for r in store.annotation(key, "bob").doc["rows"] if r["decision"] != "reject"]
    assert gold[IDS[2]][R.KEY_PHRASES] == bobs_final and gold[IDS[2]]["reviewer"] == "carol"
    assert not carol.locator("#ann-main").is_visible()  # carol reviews only: no annotation queue of her own


def test_model_text_is_shown_not_run(served, browser):
    url, _ = served
    page = open_page(browser, url, "bob")
    page.locator("[data-goto='item:X<1>']").click()
    wait_main(page, "key", "item:X<1>")
    keys(page, "g")  # open the teacher's reasoning, which holds a script too
    page.get_by_text("alert(3)").first.wait_for()
    assert page.locator("#ann-main .ann-text").inner_text() == XSS_NAME
    assert XSS_PHRASE in page.locator("#ann-main tr.ann-row .ph").all_inner_texts()
    assert page.locator("#ann-main script, #ann-queue script, #ann-reasoning script").count() == 0
    assert page.locator("b", has_text="bold").count() == 0 and page.locator("img[src=x]").count() == 0
    assert not page.dialogs
