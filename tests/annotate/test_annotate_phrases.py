from annotate.actions import apply_edit
from annotate.phrases import (
    check_doc,
    final_phrases,
    highlight_spans,
    initial_doc,
    near_duplicate,
    phrase_type,
    suggestions,
    tidy_phrase,
)
from annotate.render import esc, highlighted, main_screen
from ground import records as R

RECORD = {
    R.ID: "85123A", R.LEVEL: "item", R.INPUT: "COSTA Classic Blend Coffee Beans 200 g",
    R.EXPLICIT: [{R.ASPECT: "Brand", R.VALUE: "COSTA", R.RATIONALE: ""},
                 {R.ASPECT: "Type", R.VALUE: "Coffee Beans, Ground", R.RATIONALE: ""}],
    R.IMPLICIT: [{R.ASPECT: "Quality", R.VALUE: "Professional Grade", R.RATIONALE: ""},
                 {R.ASPECT: "Use", R.VALUE: "Home or Office Use", R.RATIONALE: ""}],
    R.KEY_PHRASES: ["costa", "200g", "Ground", "Professional Grade", "Office Use", "Well-known Brand"],
    R.RAW: "...", R.STATUS: "ok",
}


def test_phrase_type_follows_the_documented_rules_in_order():
    assert phrase_type("costa", RECORD) == ("explicit", "explicit value")  # normalised equality
    assert phrase_type("200g", RECORD) == ("explicit", "in the input")  # "200 g" in the text
    assert phrase_type("Ground", RECORD) == ("explicit", "in the input")  # inside an explicit value
    assert phrase_type("Professional Grade", RECORD) == ("implicit", "implicit value")
    assert phrase_type("Office Use", RECORD) == ("implicit", "inside an implicit value")
    assert phrase_type("Well-known Brand", RECORD) == ("implicit", "guess")


def test_initial_doc_has_every_teacher_phrase_pending():
    doc = initial_doc(RECORD)
    assert [r["phrase"] for r in doc["rows"]] == RECORD[R.KEY_PHRASES]
    assert {r["decision"] for r in doc["rows"]} == {"pending"}
    assert all(r["origin"] == r["phrase"] for r in doc["rows"])
    assert check_doc(doc) is None


def test_tidy_phrase_cleans_entry_but_keeps_case():
    assert tidy_phrase('  "Rich   Aroma." ') == "Rich Aroma"
    assert tidy_phrase("ＣＯＳＴＡ") == "COSTA"  # NFKC
    assert tidy_phrase(" ,; ") == ""


def test_near_duplicates_are_found_after_normalisation():
    assert near_duplicate("Coca Cola", ["Coca-Cola"]) == ("same", "Coca-Cola")
    assert near_duplicate("1.25 litres", ["1.25L"]) == ("same", "1.25L")
    assert near_duplicate("Professional Grades", ["Professional Grade", "Mug"]) == ("near", "Professional Grade")
    assert near_duplicate("Coffee", ["Coffee Beans"]) == ("near", "Coffee Beans")  # one is inside the other
    assert near_duplicate("Gift", ["Coffee Beans"]) is None


def test_highlight_spans_tolerate_spacing_and_case():
    text = "COSTA Classic Blend Coffee Beans 200 g"
    spans = highlight_spans(text, ["costa", "200g", "Coffee Beans", "Beans"])
    assert [text[s:e] for s, e in spans] == ["COSTA", "Coffee Beans", "200 g"]  # "Beans" is inside a longer one


def test_highlighted_text_is_escaped():
    out = highlighted('Mug <script>alert(1)</script> "x"', ["Mug", "<script>"])
    assert "<script>" not in out and "&lt;script&gt;" in out and "&quot;x&quot;" in out
    assert out.startswith('<mark class="hl">Mug</mark>')


def test_main_screen_escapes_every_model_string():
    evil = "<img src=x onerror=alert(1)>"
    record = {**RECORD, R.ID: evil, R.INPUT: evil, R.MODEL: evil, R.KEY_PHRASES: [evil]}
    doc = initial_doc(record)
    html = main_screen(record, doc, version=0, status="pending", cursor=0, done=0, total=1, position=1,
                       user="alice", suggestions=[evil, 'a"b'], cursor_set=None, answer=1, ack=-1)
    assert "<img" not in html
    assert esc(evil) in html and 'value="a&quot;b"' in html


def test_accept_reject_edit_add_toggle():
    doc = initial_doc(RECORD)
    doc = apply_edit(doc, {"op": "accept", "row": 0}).doc
    doc = apply_edit(doc, {"op": "reject", "row": 5}).doc
    doc = apply_edit(doc, {"op": "edit", "row": 1, "text": " 200 g. ", "type": "explicit"}).doc
    doc = apply_edit(doc, {"op": "toggle", "row": 2}).doc
    out = apply_edit(doc, {"op": "add", "text": "Morning Coffee", "type": "implicit"})
    doc = out.doc
    assert out.cursor == 6  # the cursor goes to the new row
    rows = doc["rows"]
    assert [r["decision"] for r in rows] == ["accept", "edit", "pending", "pending", "pending", "reject", "add"]
    assert rows[1]["phrase"] == "200 g" and rows[1]["origin"] == "200g"
    assert rows[2]["type"] == "implicit"
    assert rows[6] == {"phrase": "Morning Coffee", "type": "implicit", "decision": "add", "origin": None, "hint": "added"}
    assert final_phrases(doc) == ["costa", "200 g", "Morning Coffee"]
    assert final_phrases(doc, "implicit") == ["Morning Coffee"]


def test_edits_never_mutate_their_input():
    doc = initial_doc(RECORD)
    before = repr(doc)
    apply_edit(doc, {"op": "accept", "row": 0})
    apply_edit(doc, {"op": "add", "text": "x y z"})
    assert repr(doc) == before


def test_duplicate_add_is_refused_and_near_duplicate_warned():
    doc = initial_doc(RECORD)
    same = apply_edit(doc, {"op": "add", "text": "COSTA"})
    assert same.doc is None and same.level == "error" and "already in the list" in same.message
    near = apply_edit(doc, {"op": "add", "text": "Professional Grades"})
    assert near.doc is not None and near.level == "warn" and "Professional Grade" in near.message


def test_bad_commands_change_nothing():
    doc = initial_doc(RECORD)
    assert apply_edit(doc, {"op": "accept", "row": 99}).doc is None
    assert apply_edit(doc, {"op": "accept", "row": True}).doc is None
    assert apply_edit(doc, {"op": "add", "text": "   "}).doc is None
    assert apply_edit(doc, {"op": "add", "text": "x" * 500}).doc is None
    assert apply_edit(doc, {"op": "explode"}).level == "error"


def test_accept_all_and_reaccept_keep_the_right_decision():
    doc = initial_doc(RECORD)
    doc = apply_edit(doc, {"op": "edit", "row": 0, "text": "COSTA Coffee"}).doc
    doc = apply_edit(doc, {"op": "reject", "row": 0}).doc
    doc = apply_edit(doc, {"op": "accept", "row": 0}).doc
    assert doc["rows"][0]["decision"] == "edit"  # still differs from the teacher's phrase
    doc = apply_edit(doc, {"op": "accept_all"}).doc
    assert all(r["decision"] in ("accept", "edit") for r in doc["rows"])
    assert apply_edit(doc, {"op": "accept_all"}).doc is None


def test_suggestions_rank_used_phrases_by_frequency():
    a = {"rows": [{"phrase": "Gift", "type": "implicit", "decision": "add", "origin": None},
                  {"phrase": "Mug", "type": "explicit", "decision": "reject", "origin": "Mug"}]}
    b = {"rows": [{"phrase": "gift", "type": "implicit", "decision": "accept", "origin": "gift"},
                  {"phrase": "Tea", "type": "explicit", "decision": "accept", "origin": "Tea"}]}
    assert suggestions([a, b]) == ["Gift", "Tea"]


def test_check_doc_names_the_bad_row():
    assert check_doc({"rows": [{"phrase": "x", "type": "odd", "decision": "accept"}]}).startswith("row 0: 'type'")
    assert check_doc({"rows": "no"}) == "doc must be an object with a 'rows' list"
