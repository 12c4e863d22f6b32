"""bench/figure4.py: F1 of each knowledge (a dose, a student) against the teacher's and the gold beside the AUC of
its CTR runs, on the items every point answered and the seeds every point has (issue 25.5, Figure 4)."""

import json

import pytest

from bench.figure4 import build_points, parse_point
from bench.knowledge_dose import replaced
from eval.correlate import write_report
from eval.embedder import Embedder

WORDS = ["vintage", "ceramic", "christmas", "garden", "kitchen", "candle", "wooden", "children", "retro", "party",
         "glass", "metal", "lantern", "cushion", "heart", "bird", "paper", "ribbon"]


def record(n: int) -> dict:
    phrases = WORDS[3 * n : 3 * n + 3]
    return {"id": f"i{n}", "level": "item", "input": f"item {n}", "status": "ok", "model": "t", "template": "item",
            "reference_id": None, "raw": "", "explicit": [], "implicit": [{"aspect": "", "value": p} for p in phrases],
            "key_phrases": phrases, "leaked": []}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def runs(folder, aucs):
    for seed, auc in enumerate(aucs):
        (folder / f"seed-{seed}").mkdir(parents=True)
        (folder / f"seed-{seed}" / "metrics.json").write_text(json.dumps({"test": {"auc": auc}}))
    return folder


def test_points_fall_with_the_dose_and_use_the_common_seeds(tmp_path):
    teacher = [record(n) for n in range(6)]
    reference = write(tmp_path / "teacher.jsonl", teacher)
    points = [("teacher", reference, runs(tmp_path / "r0", [0.75, 0.76, 0.74]))]
    for share, aucs in ((0.5, [0.74, 0.75]), (1.0, [0.72, 0.73, 0.71])):
        dose = write(tmp_path / f"d{share}.jsonl", replaced(teacher, share, seed=0)[0])
        points.append((f"{share:.0%}", dose, runs(tmp_path / f"r{share}", aucs)))
    out = build_points(reference, points, Embedder(), n_boot=50)
    assert [p["seeds"] for p in out] == [[0, 1]] * 3 and [p["aucs"] for p in out][2] == [0.72, 0.73]
    f1 = [p["f1"] for p in out]
    assert f1[0] == 1.0 and f1[0] > f1[1] > f1[2]
    path = tmp_path / "points.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in out))
    stats = write_report(path, tmp_path / "report", n_boot=50)
    assert stats["spearman"]["r"] == pytest.approx(1.0) and (tmp_path / "report" / "f1_auc.png").exists()


def test_a_point_is_name_knowledge_folder():
    with pytest.raises(SystemExit, match="NAME=KNOWLEDGE=RUN_FOLDER"):
        parse_point("teacher=only-a-file")


def test_a_student_of_held_out_items_is_scored_on_those_and_on_the_gold(tmp_path):
    """A student answering only its held-out items: every point's F1 is over those; --gold scores the same rows."""
    teacher = [record(n) for n in range(6)]
    reference = write(tmp_path / "teacher.jsonl", teacher)
    student = [dict(r, key_phrases=r["key_phrases"][:1]) for r in teacher[4:]]  # held out: i4, i5; one phrase each
    gold = write(tmp_path / "gold.jsonl", [{"id": "i5", "level": "item", "input": "item 5", "key_phrases": ["ribbon"],
                                            "explicit": [], "implicit": ["ribbon"], "annotator": "a", "guideline": "g"}])
    points = [("teacher", reference, runs(tmp_path / "r0", [0.75])),
              ("student", write(tmp_path / "s.jsonl", student), runs(tmp_path / "r1", [0.70]))]
    out = build_points(reference, points, Embedder(), n_boot=20, gold=gold)
    assert [p["items_scored"] for p in out] == [2, 2] and out[0]["f1"] == 1.0 and out[1]["f1"] == pytest.approx(0.5)
    assert [p["gold_items"] for p in out] == [1, 1]
    assert out[0]["f1_gold"] == pytest.approx(0.5) and out[1]["f1_gold"] == 0.0  # i5: teacher bird, paper, ribbon; student bird
