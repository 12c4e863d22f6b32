import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import eval.embedder
from distill.eval_f1_cli import F1_JSON, PER_ITEM_JSONL, eval_f1
from ground.files import write_jsonl
from ground import records as R

app = typer.Typer()
app.command("eval-f1")(eval_f1)
app.command("noop")(lambda: None)  # a second command keeps "eval-f1" a named subcommand, as in distill


class FakeEmbedder:
    """Stands in for eval.embedder.Embedder: vectors from a fixed table, no model."""

    VECTORS = {"gift": [1.0, 0.0, 0.0], "present": [0.75, 0.66, 0.0]}

    def __init__(self, name=None, show_progress=False, **_):
        self.name, self.path = name, f"fake:{name}"

    def encode(self, phrases):
        rows = []
        for p in phrases:
            seed = sum(map(ord, p))
            rows.append(self.VECTORS.get(p, np.random.default_rng(seed).normal(size=3)))
        return np.asarray(rows, dtype=np.float32)


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setattr(eval.embedder, "Embedder", FakeEmbedder)
    preds = [
        {R.ID: "a", R.LEVEL: "item", R.INPUT: "x", R.KEY_PHRASES: ["Gift", "Mug"], R.RAW: "", R.STATUS: "ok"},
        {R.ID: "z", R.LEVEL: "item", R.INPUT: "x", R.KEY_PHRASES: ["Gift"], R.RAW: "", R.STATUS: "ok"},
    ]
    golds = [
        {R.ID: "a", R.LEVEL: "item", R.KEY_PHRASES: ["Present", "mug"]},
        {R.ID: "b", R.LEVEL: "item", R.KEY_PHRASES: ["Gift"]},
    ]
    write_jsonl(tmp_path / "pred.jsonl", preds)
    write_jsonl(tmp_path / "gold.jsonl", golds)
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(app, ["eval-f1", *map(str, args)])


def test_writes_table_json_and_per_item(files):
    out = files / "out"
    result = invoke("--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "-o", out, "--n-boot", 20)
    assert result.exit_code == 0, result.output
    assert "macro (headline)" in result.output and "uncalibrated" in result.output
    report = json.loads((out / F1_JSON).read_text())
    assert report["tau_calibrated"] is False and report["config"]["tau"] == 0.8
    assert report["config"]["seed"] == 0 and report["config"]["embedder"] == "all-minilm-l6-v2"
    # a: mug matches, gift~present at cosine 0.75 < 0.8 -> F1 0.5; b: missing -> 0.
    assert report["macro_f1"] == pytest.approx(0.25)
    assert report["tau_sweep"]["0.70"]["macro"]["f1"] == pytest.approx(0.5)
    assert report["missing_predictions"] == [{R.LEVEL: "item", R.ID: "b"}]
    assert report["unscored_predictions"] == [{R.LEVEL: "item", R.ID: "z"}]
    rows = [json.loads(line) for line in (out / PER_ITEM_JSONL).read_text().splitlines()]
    assert [r[R.ID] for r in rows] == ["a", "b"]
    assert rows[0]["unmatched_gold"] == ["present"]


def test_calibration_sets_tau_and_is_recorded(files):
    pairs = files / "pairs.tsv"
    pairs.write_text("Gift\tPresent\t1\nGift\tMug\t0\n", encoding="utf-8")
    out = files / "out"
    args = ["--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "-o", out, "--calibrate", pairs]
    result = invoke(*args, "--n-boot", 0)
    assert result.exit_code == 0, result.output
    report = json.loads((out / F1_JSON).read_text())
    assert report["tau_calibrated"] is True and report["calibration"]["n_pairs"] == 2
    assert report["tau"] == report["calibration"]["tau"] <= 0.75
    assert report["macro_f1"] == pytest.approx(0.5)  # gift~present now matches


def test_bad_record_is_one_line_with_path_and_line(files):
    (files / "gold.jsonl").write_text('{"id": "a", "level": "item", "key_phrases": ["x"]}\n{"id": "b"}\n')
    result = invoke("--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "-o", files / "out")
    assert result.exit_code == 1
    assert "gold.jsonl:2: missing field 'level'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (files / "out").exists()


def test_bad_pairs_file_and_conflicting_flags(files):
    pairs = files / "pairs.tsv"
    pairs.write_text("Gift\tPresent\tmaybe\n", encoding="utf-8")
    base = ["--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "-o", files / "out"]
    result = invoke(*base, "--calibrate", pairs)
    assert result.exit_code == 1 and "pairs.tsv:1: label must be 0 or 1" in result.stderr
    result = invoke(*base, "--calibrate", pairs, "--tau", 0.7)
    assert result.exit_code == 1 and "not both" in result.stderr
    result = invoke(*base, "--level", "shop")
    assert result.exit_code == 1 and "level" in result.stderr


@pytest.mark.integration
def test_real_embedder_refuses_cjk(tmp_path):
    pred = {R.ID: "a", R.LEVEL: "item", R.INPUT: "x", R.KEY_PHRASES: ["可口可乐"], R.RAW: "", R.STATUS: "ok"}
    write_jsonl(tmp_path / "pred.jsonl", [pred])
    write_jsonl(tmp_path / "gold.jsonl", [{R.ID: "a", R.LEVEL: "item", R.KEY_PHRASES: ["百事可乐"]}])
    result = invoke("--pred", tmp_path / "pred.jsonl", "--gold", tmp_path / "gold.jsonl", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "--embedder" in result.stderr and "multilingual" in result.stderr


def test_nothing_to_score_is_an_error(files):
    args = ["--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "-o", files / "out"]
    result = invoke(*args, "--level", "user")
    assert result.exit_code == 1 and "no gold records to score at level user" in result.stderr


def test_the_name_words_baseline_is_printed_beside_the_prediction(files):
    golds = [{R.ID: "a", R.LEVEL: "item", R.INPUT: "Gift Mug", R.KEY_PHRASES: ["Present", "mug"]},
             {R.ID: "b", R.LEVEL: "item", R.INPUT: "Gift of Tea", R.KEY_PHRASES: ["Gift"]}]
    write_jsonl(files / "gold.jsonl", golds)
    out = files / "out"
    result = invoke("--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "-o", out, "--n-boot", 0,
                    "--baseline", "name-words")
    assert result.exit_code == 0, result.output
    assert "baseline name-words" in result.output and "prediction" in result.output
    report = json.loads((out / F1_JSON).read_text())
    # a: {gift, mug} vs {present, mug} -> F1 0.5; b: {gift, tea} vs {gift} -> P 1/2, R 1 -> F1 2/3.
    assert report["baseline"]["headline"]["macro"]["f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert report["macro_f1"] == pytest.approx(0.25)  # the prediction's own figures are unchanged


def test_the_teacher_is_scored_beside_and_the_ratio_is_paired_over_the_same_gold(files):
    teacher = [{R.ID: "a", R.LEVEL: "item", R.INPUT: "x", R.KEY_PHRASES: ["Present", "mug"], R.RAW: "", R.STATUS: "ok"},
               {R.ID: "b", R.LEVEL: "item", R.INPUT: "x", R.KEY_PHRASES: ["Tea"], R.RAW: "", R.STATUS: "ok"}]
    write_jsonl(files / "teacher.jsonl", teacher)
    out = files / "out"
    result = invoke("--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "-o", out, "--n-boot", 200,
                    "--teacher", files / "teacher.jsonl")
    assert result.exit_code == 0, result.output
    ratio = json.loads((out / F1_JSON).read_text())["over_teacher"]
    # prediction: a 0.5, b missing 0 -> 0.25; teacher: a 1.0, b 0 -> 0.5; the ratio of the means over both records.
    assert (ratio["num_f1"], ratio["den_f1"], ratio["n_items"]) == (pytest.approx(0.25), pytest.approx(0.5), 2)
    assert ratio["ratio"] == pytest.approx(0.5) and ratio["headline"]["macro"]["f1"] == pytest.approx(0.5)
    # resampling {a, b}: only draws holding a have a teacher F1 above 0; each gives 0.5 / 1.0
    assert ratio["ratio_ci95"] == pytest.approx([0.5, 0.5])
    assert "teacher" in result.output and "prediction F1 / teacher F1: 0.50  95% CI [0.50, 0.50]" in result.output


def test_an_unknown_baseline_is_refused(files):
    result = invoke("--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "--baseline", "random")
    assert result.exit_code == 1 and "--baseline must be one of name-words" in result.output


class NoEmbedder:
    """Fails if the command gets as far as loading an embedder."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("the embedder was loaded before the input was checked")


def test_output_naming_an_existing_file_is_refused_before_any_work(files, monkeypatch):
    monkeypatch.setattr(eval.embedder, "Embedder", NoEmbedder)
    report = files / "report.txt"
    report.write_text("last week's figures")
    result = invoke("--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "-o", report)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {report}: is a file; give the path of an output folder"
    assert report.read_text() == "last week's figures"


def test_duplicate_gold_ids_name_the_path_and_line(files, monkeypatch):
    monkeypatch.setattr(eval.embedder, "Embedder", NoEmbedder)
    gold = files / "gold.jsonl"
    gold.write_text(gold.read_text() + json.dumps({R.ID: "a", R.LEVEL: "item", R.KEY_PHRASES: ["Mug"]}) + "\n")
    result = invoke("--pred", files / "pred.jsonl", "--gold", gold, "-o", files / "out")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {gold}:3: duplicate id 'a' (first on line 1)"


def test_empty_gold_is_refused_before_the_embedder_loads(files, monkeypatch):
    monkeypatch.setattr(eval.embedder, "Embedder", NoEmbedder)
    (files / "gold.jsonl").write_text("")
    result = invoke("--pred", files / "pred.jsonl", "--gold", files / "gold.jsonl", "-o", files / "out")
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {files / 'gold.jsonl'}: no records (the file is empty)"
