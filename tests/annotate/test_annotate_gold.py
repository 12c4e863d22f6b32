import json

import krippendorff
import pytest
from typer.testing import CliRunner

from annotate.agreement import agreement_report, decision_matrix, masi_distance
from annotate.assign import AssignConfig
from annotate.cli import app
from annotate.gold import gold_records, item_state
from annotate.phrases import initial_doc
from annotate.prepare import prepare_store
from annotate.render import review_columns
from annotate.review import UNION, candidates, chosen_by, gold_text, initial_choice, parse_gold_text, save_gold
from annotate.store import Store
from ground.files import write_jsonl
from ground import records as R


def record(item_id, explicit, implicit):
    return {R.ID: item_id, R.LEVEL: "item", R.INPUT: " ".join(explicit), R.KEY_PHRASES: explicit + implicit,
            R.EXPLICIT: [{R.ASPECT: "A", R.VALUE: v, R.RATIONALE: ""} for v in explicit],
            R.IMPLICIT: [{R.ASPECT: "B", R.VALUE: v, R.RATIONALE: ""} for v in implicit],
            R.RAW: "raw", R.STATUS: "ok", R.MODEL: "teacher-x"}


RECORDS = [record("A", ["p1"], ["p2", "p3"]), record("B", ["q1"], ["q2"]), record("C", ["r1"], [])]


def decided(rec, decisions):
    doc = initial_doc(rec)
    for row, decision in zip(doc["rows"], decisions):
        row["decision"] = decision
    return doc


@pytest.fixture
def store(tmp_path):
    """alice and bob on every item: they disagree on A (p2), agree on B; C is only a draft."""
    s = Store(tmp_path / "gold.sqlite")
    prepare_store(s, RECORDS, ["alice", "bob"], AssignConfig(per_item=2))
    s.save("item:A", "alice", decided(RECORDS[0], ["accept", "accept", "reject"]), 0, "submitted")
    s.save("item:A", "bob", decided(RECORDS[0], ["accept", "reject", "reject"]), 0, "submitted")
    s.save("item:B", "alice", decided(RECORDS[1], ["accept", "accept"]), 0, "submitted")
    s.save("item:B", "bob", decided(RECORDS[1], ["accept", "accept"]), 0, "submitted")
    s.save("item:C", "alice", decided(RECORDS[2], ["accept"]), 0, "draft")
    return s


def test_unanimous_items_are_gold_disagreements_wait_for_review(store):
    snap = store.snapshot()
    assert [item_state(k, snap).state for k in ("item:A", "item:B", "item:C")] == ["needs review", "unanimous", "waiting"]
    rows, counts = gold_records(snap)
    assert [r[R.ID] for r in rows] == ["B"]
    assert counts == {"waiting": 1, "unanimous": 1, "needs review": 1, "reviewed": 0}
    gold = rows[0]
    assert gold[R.KEY_PHRASES] == ["q1", "q2"] and gold[R.EXPLICIT] == ["q1"] and gold[R.IMPLICIT] == ["q2"]
    assert gold["annotators"] == ["alice", "bob"] and gold["gold_source"] == "unanimous"
    assert gold["submitted_at"] and gold["created_at"] and len(gold["decisions"]) == 4


def test_reviewer_picks_the_gold_with_a_reason(store):
    state = item_state("item:A", store.snapshot())
    assert ("p2", "implicit", ["alice"]) in candidates(state)
    assert chosen_by(state, UNION) == [("p1", "explicit"), ("p2", "implicit")]
    assert initial_choice(state) == []  # a disagreement starts from nothing
    assert len(initial_choice(item_state("item:B", store.snapshot()))) == 2  # a unanimous item from its set
    bobs = gold_text(chosen_by(state, "bob"))
    assert bobs == "explicit: p1\n"
    assert not save_gold(store, "carol", "item:A", bobs, "", "bob", 0).ok  # a reason is required
    assert save_gold(store, "carol", "item:A", bobs, "p2 is not supported", "bob", 0).ok
    rows, counts = gold_records(store.snapshot())
    reviewed = next(r for r in rows if r[R.ID] == "A")
    assert reviewed[R.KEY_PHRASES] == ["p1"] and reviewed["reviewer"] == "carol"
    assert reviewed["reason"] == "p2 is not supported" and reviewed["gold_source"] == "review"
    assert counts["reviewed"] == 1
    assert initial_choice(item_state("item:A", store.snapshot())) == [("p1", "explicit")]


def test_the_reviewer_edits_a_phrase_and_its_type_as_text(store):
    text = "explicit: p1 edited\n\ni:  \"p9\" \nimplicit: p2"
    assert parse_gold_text(text) == [("p1 edited", "explicit"), ("p9", "implicit"), ("p2", "implicit")]
    for bad, problem in (("p1", "line 1: start it with explicit: or implicit:"), ("e: a\ni: A", "line 2: 'A' repeats line 1"),
                         ("x: p1", "line 1: start it with"), ("e:  ", "line 1: a phrase of 1 to")):
        with pytest.raises(ValueError, match=problem):
            parse_gold_text(bad)
    result = save_gold(store, "carol", "item:A", "explicit: p1\nsomething", "a reason", UNION, 0)
    assert not result.ok and result.message.startswith("gold phrases, line 2:")
    assert save_gold(store, "carol", "item:A", "implicit: p1\nexplicit: p2 extra", "types fixed", UNION, 0).ok
    gold = next(r for r in gold_records(store.snapshot())[0] if r[R.ID] == "A")
    assert gold[R.EXPLICIT] == ["p2 extra"] and gold[R.IMPLICIT] == ["p1"]


def test_agreement_figures_match_hand_computation(store):
    report = agreement_report(store.snapshot())
    assert report["items"] == 2 and report["annotators"] == ["alice", "bob"]
    # decisions on p1 p2 p3 q1 q2: alice 1 1 0 1 1, bob 1 0 0 1 1
    matrix = decision_matrix({k: v for k, v in store.snapshot().annotations.items() if k != "item:C"}, ["alice", "bob"])
    assert matrix.tolist() == [[1, 1, 0, 1, 1], [1, 0, 0, 1, 1]]
    assert report["decision_alpha"] == pytest.approx(1 - 9 * 2 / (2 * 7 * 3))  # 1 - (n-1) D_o / D_e
    assert report["decision_alpha"] == pytest.approx(krippendorff.alpha(matrix, level_of_measurement="nominal"))
    # final sets: A {p1,p2} vs {p1} (MASI 1 - 1/2 * 0.67), B identical; every A-B pair disjoint
    d = masi_distance(frozenset({"p1", "p2"}), frozenset({"p1"}))
    assert d == pytest.approx(0.665)
    d_o = 2 * d / 4
    d_e = 2 * (d + 4 * 1.0) / (4 * 3)
    assert report["masi_alpha"] == pytest.approx(1 - d_o / d_e)
    f1 = report["pairwise_f1"]
    assert f1["overall"] == pytest.approx(6 / 7)
    assert f1["explicit"] == pytest.approx(1.0) and f1["implicit"] == pytest.approx(2 / 3)


def test_masi_distance_cases():
    a, b = frozenset({"x", "y"}), frozenset({"y", "z"})
    assert masi_distance(a, a) == 0 and masi_distance(frozenset(), frozenset()) == 0
    assert masi_distance(a, frozenset({"q"})) == 1
    assert masi_distance(a, b) == pytest.approx(1 - (1 / 3) * 0.33)


def test_agreement_is_undefined_without_double_annotation(tmp_path):
    s = Store(tmp_path / "g.sqlite")
    prepare_store(s, RECORDS, ["alice"], AssignConfig())
    report = agreement_report(s.snapshot())
    assert report["items"] == 0 and report["decision_alpha"] is None and report["masi_alpha"] is None


def test_cli_export_writes_gold_readable_by_the_schema(store, tmp_path):
    out = tmp_path / "out" / "gold.jsonl"
    result = CliRunner().invoke(app, ["export", "--db", str(store.path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 1 gold records" in result.output and "1 needs review" in result.output
    rows = R.read_records(out, "gold")
    assert [r[R.ID] for r in rows] == ["B"]
    info = json.loads(out.with_name("gold.run.json").read_text())
    assert info["metrics"]["gold"] == 1


def test_cli_agreement_prints_and_writes(store, tmp_path):
    out = tmp_path / "agreement.json"
    result = CliRunner().invoke(app, ["agreement", "--db", str(store.path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "alpha, accept/reject decisions (5 phrases): 0.571" in result.output
    assert "pairwise F1 (exact normalised match): overall 0.857" in result.output
    assert json.loads(out.read_text())["items"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "--db", "missing.sqlite", "-o", "x.jsonl"], "missing.sqlite: no such database"),
        (["serve", "--db", "g.sqlite", "--input", "k.jsonl"], "no accounts"),
        (["serve", "--db", "g.sqlite", "--input", "k.jsonl", "--auth", "alice"], "expected user:password"),
        (["serve", "--db", "g.sqlite", "--input", "nope.jsonl", "--auth", "a:b"], "nope.jsonl: no such file"),
        (["serve", "--db", "g.sqlite", "--input", "k.jsonl", "--auth", "a:b", "--per-item", "2"],
         "2 annotators per item need at least 2"),
        (["serve", "--db", "g.sqlite", "--input", "k.jsonl", "--auth", "a:b", "--reviewer", "c"], "'c' has no account"),
    ],
)
def test_cli_errors_are_one_line_and_exit_1(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "k.jsonl", RECORDS)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_a_flagged_submit_goes_to_review_never_unanimous(store):
    flagged = decided(RECORDS[1], ["accept", "accept"]) | {"flag": "is q2 implied?"}
    store.save("item:B", "alice", flagged, 1, "submitted")  # bob's set is the same: unanimous but for the flag
    snap = store.snapshot()
    state = item_state("item:B", snap)
    assert state.state == "needs review" and len(state.submitted) == 2
    assert "item:B" not in {f"{g[R.LEVEL]}:{g[R.ID]}" for g in gold_records(snap)[0]}
    columns = review_columns([(a.annotator, a.status, a.doc) for a in state.submitted])
    assert "⚑ flagged: is q2 implied?" in columns
