"""Issue 9, section 1 in a real browser (Debian's chromium through Playwright): gold is never silently wrong or lost.

Every wait is on the page's state (an attribute of the item card, a message, sessionStorage), never a sleep.
"""

import re

import pytest
from playwright.sync_api import expect

from annotate.gold import gold_records, item_state
from annotate.phrases import flag_of, initial_doc
from annotate.store import Store
from annotate_helpers import (
    IDS,
    TIMEOUT_MS,
    decisions,
    keys,
    knowledge_records,
    log_in,
    open_page,
    start_server,
    stop_server,
    wait_main,
)
from ground.files import write_jsonl
from ground import records as R

pytestmark = pytest.mark.browser
TRUNCATED = {R.ID: "T-EMPTY", R.LEVEL: "item", R.INPUT: "Stainless steel water bottle 750ml", R.KEY_PHRASES: [],
             R.EXPLICIT: [], R.IMPLICIT: [], R.RAW: "Explicit Information:\nType: Water Bo", R.STATUS: "truncated",
             R.MODEL: "fake-teacher"}
TOTE = {R.ID: "TOTE1", R.LEVEL: "item", R.INPUT: "Cotton tote bag, natural colour",
        R.EXPLICIT: [{R.ASPECT: "Material", R.VALUE: "Canvas", R.RATIONALE: ""},
                     {R.ASPECT: "Type", R.VALUE: "Tote Bag", R.RATIONALE: ""}],
        R.IMPLICIT: [{R.ASPECT: "Use", R.VALUE: "Shopping", R.RATIONALE: ""}],
        R.KEY_PHRASES: ["Canvas", "Tote Bag", "Shopping"], R.RAW: "Explicit Information:\nMaterial: Canvas",
        R.STATUS: "ok", R.MODEL: "fake-teacher"}
UNSENT = "() => JSON.parse(sessionStorage.getItem('ann-unsent') || 'null')"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser-gold")
    write_jsonl(tmp / "knowledge.jsonl", knowledge_records() + [TRUNCATED, TOTE])
    proc, url = start_server(tmp / "knowledge.jsonl", tmp / "gold.sqlite", "--per-item", "2")
    yield url, Store(tmp / "gold.sqlite")
    stop_server(proc)


def goto(page, key):
    page.locator(f"[data-goto='{key}']").click()
    wait_main(page, "key", key)


def without_flag(doc):
    return {k: v for k, v in doc.items() if k != "flag"}


def test_a_flag_survives_submit_and_goes_to_review_with_its_reason(served, browser):
    url, store = served
    key = f"item:{IDS[0]}"
    page = open_page(browser, url, "alice")
    goto(page, key)
    keys(page, "f")
    expect(page.locator("#ann-mode")).to_have_text("flag")
    page.keyboard.type("is 200g the weight?")
    keys(page, "Enter")
    wait_main(page, "flagged", "1")
    expect(page.locator("#ann-main .ann-flag")).to_contain_text("Flagged for review: is 200g the weight?")
    keys(page, "Shift+A", "Enter")
    wait_main(page, "key", f"item:{IDS[1]}")
    saved = store.annotation(key, "alice")
    assert saved.status == "submitted" and flag_of(saved.doc) == "is 200g the weight?"
    expect(page.locator(f"[data-goto='{key}'] .q-flag")).to_be_visible()

    assert store.save(key, "bob", without_flag(saved.doc), 0, "submitted").ok  # bob's set is the same
    snapshot = store.snapshot()
    assert item_state(key, snapshot).state == "needs review"
    assert IDS[0] not in [g[R.ID] for g in gold_records(snapshot)[0]]  # never exported as unanimous

    carol = open_page(browser, url, "carol")
    carol.get_by_label("Item").click()
    carol.get_by_role("option", name=f"{IDS[0]} — needs review").click()
    expect(carol.locator("#rv-body .rv-flag")).to_have_text("⚑ flagged: is 200g the weight?")


def test_an_empty_truncated_answer_is_badged_and_asks_before_submitting(served, browser):
    url, store = served
    key = "item:T-EMPTY"
    page = open_page(browser, url, "alice")
    goto(page, key)
    expect(page.locator("#ann-main .ann-answer")).to_have_text("⚠ answer truncated")
    keys(page, "Enter")
    question = page.locator(".ann-msg.lvl-confirm")
    expect(question).to_contain_text("Submit with no key phrases?")
    assert store.annotation(key, "alice") is None  # nothing submitted yet
    keys(page, "Enter")  # yes
    page.wait_for_function(f"() => document.querySelector('#ann-main')?.dataset.key !== '{key}'")  # the next item
    expect(question).to_have_count(0)
    saved = store.annotation(key, "alice")
    assert saved.status == "submitted" and saved.doc["rows"] == []


def test_explicit_phrases_not_in_the_input_are_marked_and_typed_ones_found_there_are_explicit(served, browser):
    url, _ = served
    page = open_page(browser, url, "bob")
    goto(page, "item:TOTE1")
    rows = page.locator("#ann-main tr.ann-row")
    expect(rows.nth(0).locator(".ungrounded")).to_have_text("⚠ not in input")  # Canvas, for a cotton bag
    expect(rows.nth(1).locator(".ungrounded")).to_have_count(0)  # Tote Bag
    keys(page, "n")
    page.keyboard.type("natural colour")
    keys(page, "Enter", "n")
    page.keyboard.type("Eco Friendly")
    keys(page, "Enter")
    wait_main(page, "version", 2)
    assert rows.nth(3).locator(".t").inner_text() == "explicit" and rows.nth(4).locator(".t").inner_text() == "implicit"


def test_undo_survives_a_reload_and_undoing_to_the_start_makes_it_pending_again(served, browser):
    url, store = served
    key = f"item:{IDS[3]}"
    page = open_page(browser, url, "bob")
    goto(page, key)
    keys(page, "a", "a")
    wait_main(page, "version", 2)
    page.reload()
    page.locator("#ann-main").wait_for()
    goto(page, key)
    keys(page, "u")
    wait_main(page, "version", 3)
    assert decisions(page)[:2] == ["✓ accepted", "pending"]
    keys(page, "u")
    wait_main(page, "version", 4)
    expect(page.locator("#ann-main .ann-badge").first).to_have_text("pending · v4")
    assert store.annotation(key, "bob").status == "pending"
    expect(page.locator(f"[data-goto='{key}']")).to_have_class(re.compile(r"\bst-pending\b"))


def test_the_reviewer_edits_saves_with_the_keyboard_and_logs_out(served, browser):
    url, store = served
    key = f"item:{IDS[2]}"
    record = store.item(key)
    for user, decision in (("alice", "accept"), ("bob", "reject")):
        doc = initial_doc(record)
        for row in doc["rows"]:
            row["decision"] = "accept"
        doc["rows"][0]["decision"] = decision
        assert store.save(key, user, doc, 0, "submitted").ok
    carol = open_page(browser, url, "carol")
    summary = carol.locator("#rv-summary")
    expect(summary).to_contain_text("needs review")
    carol.get_by_label("Item").click()
    carol.get_by_role("option", name=f"{IDS[2]} — needs review").click()
    expect(carol.locator("#rv-body details.rv-raw")).to_contain_text("Explicit Information")  # the teacher's reasoning
    carol.get_by_role("radio", name="alice").check()
    gold = carol.locator("#rv-gold textarea")
    expect(gold).to_have_value(re.compile(r"^explicit: Tomato Soup$", re.M))
    edited = gold.input_value().replace("explicit: Tomato Soup", "implicit: Cream of Tomato Soup")
    gold.fill(edited)
    carol.locator("#rv-reason textarea").fill("the soup is cream of tomato")
    keys(carol, "Control+Enter")
    expect(carol.locator("#rv-msg")).to_contain_text(f"gold saved for {key}")
    expect(summary).to_contain_text("reviewed: 1")  # counts redrawn without refreshing the list
    expect(carol.locator("#rv-body .rv-state")).to_have_text("reviewed")
    review = store.review(key)
    assert ("Cream of Tomato Soup", "implicit") in [(r["phrase"], r["type"]) for r in review.doc["rows"]]
    assert review.reason == "the soup is cream of tomato"

    carol.locator("#rv-body .ann-text").click()  # out of the text boxes: ] opens the next item (wrapping round)
    keys(carol, "]")
    carol.wait_for_function(f"() => document.querySelector('#rv-body .rv-head')?.dataset.key !== '{key}'")
    carol.locator("#rv-top a", has_text="log out").click()
    carol.locator("input[type=password]").wait_for()


def test_a_key_typed_while_the_server_is_down_lands_after_the_re_login(tmp_path, browser):
    knowledge, db = tmp_path / "knowledge.jsonl", tmp_path / "gold.sqlite"
    write_jsonl(knowledge, knowledge_records())
    proc, url = start_server(knowledge, db)
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    try:
        page = open_page(browser, url, "alice")
        key = page.locator("#ann-main").get_attribute("data-key")
        stop_server(proc)
        keys(page, "a")  # accept row 1 while nothing answers
        page.wait_for_function(f"() => ({UNSENT})()?.commands.length === 1")
        proc, _ = start_server(knowledge, db, port=port)
        log_in(page, url, "alice")  # the restarted server knows no session: log in again
        page.wait_for_function(f"() => ({UNSENT})() === null")
        wait_main(page, "version", 1)
        assert Store(db, readonly=True).annotation(key, "alice").doc["rows"][0]["decision"] == "accept"

        stop_server(proc)
        keys(page, "x")  # reject row 2 while nothing answers ...
        page.wait_for_function(f"() => ({UNSENT})()?.commands.length === 1")
        store = Store(db)
        changed = store.annotation(key, "alice").doc
        changed["rows"][2]["decision"] = "reject"
        assert store.save(key, "alice", changed, 1, "draft").ok  # ... and another tab changed the item meanwhile
        store.close()
        proc, _ = start_server(knowledge, db, port=port)
        log_in(page, url, "alice")
        notice = page.locator("#ann-unsaved")
        expect(notice).to_contain_text("1 change(s) not saved", timeout=TIMEOUT_MS)
        keys(page, "Enter")  # acknowledged
        expect(notice).to_have_count(0)
        assert page.evaluate(UNSENT) is None
        saved = Store(db, readonly=True).annotation(key, "alice")
        assert saved.version == 2 and saved.doc == changed  # nothing was sent over the other change
    finally:
        stop_server(proc)
