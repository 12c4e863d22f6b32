"""What the annotation screen marks: explicit phrases not in the input, answers that are not whole."""

from annotate.phrases import initial_doc
from annotate.render import main_screen
from ground import records as R

RECORD = {R.ID: "T1", R.LEVEL: "item", R.INPUT: "Cotton tote bag, natural colour",
          R.EXPLICIT: [{R.ASPECT: "Material", R.VALUE: "Canvas", R.RATIONALE: ""},
                       {R.ASPECT: "Type", R.VALUE: "Tote Bag", R.RATIONALE: ""}],
          R.IMPLICIT: [], R.KEY_PHRASES: ["Canvas", "Tote Bag", "Cotton"], R.STATUS: "ok", R.MODEL: "t"}


def screen_of(record):
    return main_screen(record, initial_doc(record), version=0, status="pending", cursor=0, done=0, total=1, position=1,
                       user="alice", suggestions=[], cursor_set=None, answer=1, ack=-1)


def rows_of(html):
    return html.split("<tbody>")[1].split("</tr>")[:-1]


def test_an_ungrounded_explicit_phrase_is_marked():
    rows = rows_of(screen_of(RECORD))
    marked = ["not in input" in row for row in rows]
    assert marked == [True, False, False]  # Canvas; Tote Bag and Cotton are in the text


def test_the_records_grounded_field_wins_over_computing_it():
    entries = [{**RECORD[R.EXPLICIT][0], "grounded": True}, {**RECORD[R.EXPLICIT][1], "grounded": False}]
    rows = rows_of(screen_of({**RECORD, R.EXPLICIT: entries}))
    assert ["not in input" in row for row in rows] == [False, True, False]


def test_an_answer_that_is_not_ok_has_a_visible_badge():
    assert "ann-answer" not in screen_of(RECORD)
    truncated = screen_of({**RECORD, R.STATUS: "truncated", R.KEY_PHRASES: []})
    assert '<span class="ann-badge ann-answer"' in truncated and "⚠ answer truncated" in truncated
