"""A promise of the annotation tool that a plausible one-line bug breaks silently (issue 23, section 2):
gold is unanimous only when the annotators agree on the phrases and on their types."""

from __future__ import annotations

import pytest

from annotate.assign import AssignConfig
from annotate.gold import gold_records, item_state, typed_set
from annotate.phrases import initial_doc
from annotate.prepare import prepare_store
from annotate.store import Store
from ground import records as R

RECORD = {R.ID: "A", R.LEVEL: "item", R.INPUT: "Red Mug", R.KEY_PHRASES: ["Red", "Gift"],
          R.EXPLICIT: [{R.ASPECT: "Colour", R.VALUE: "Red", R.RATIONALE: ""}],
          R.IMPLICIT: [{R.ASPECT: "Use", R.VALUE: "Gift", R.RATIONALE: ""}],
          R.RAW: "raw", R.STATUS: "ok", R.MODEL: "teacher-x"}


def accepted(retype: dict[str, str] | None = None, rename: dict[str, str] | None = None) -> dict:
    doc = initial_doc(RECORD)
    for row in doc["rows"]:
        row["decision"] = "accept"
        row["type"] = (retype or {}).get(row["phrase"], row["type"])
        row["phrase"] = (rename or {}).get(row["phrase"], row["phrase"])
    return doc


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gold.sqlite")
    prepare_store(s, [RECORD], ["alice", "bob"], AssignConfig(per_item=2))
    return s


def test_same_phrases_with_another_type_go_to_review_not_to_gold(store):
    store.save("item:A", "alice", accepted(), 0, "submitted")
    store.save("item:A", "bob", accepted(retype={"Gift": R.EXPLICIT}), 0, "submitted")
    snap = store.snapshot()
    assert item_state("item:A", snap).state == "needs review"
    rows, counts = gold_records(snap)
    assert rows == [] and counts["needs review"] == 1 and counts["unanimous"] == 0


def test_same_phrases_and_types_up_to_normalisation_are_unanimous(store):
    store.save("item:A", "alice", accepted(), 0, "submitted")
    store.save("item:A", "bob", accepted(rename={"Gift": "  gift "}), 0, "submitted")
    assert item_state("item:A", store.snapshot()).state == "unanimous"


def test_the_typed_set_holds_each_phrase_with_its_type():
    assert typed_set(accepted()) == {("red", R.EXPLICIT), ("gift", R.IMPLICIT)}
    assert typed_set(accepted(retype={"Gift": R.EXPLICIT})) == {("red", R.EXPLICIT), ("gift", R.EXPLICIT)}
