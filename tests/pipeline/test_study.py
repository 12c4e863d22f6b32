"""pipeline.study: its students, its points (read back by `eval correlate`), its checks of the sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.correlate import read_points
from ground.files import write_jsonl
from pipeline.study import StudyConfig, point_of, timings

ROOT = Path(__file__).resolve().parents[2]
DATA = {"sample": ROOT / "data" / "sample", "gold": ROOT / "data" / "gold" / "gold.jsonl"}


def test_the_study_writes_points_that_eval_correlate_reads(tmp_path):
    cfg = StudyConfig(**DATA, out=tmp_path, items=[4, 8], augment=["none", "aug"], seeds=[0, 1])
    assert [s[0] for s in cfg.students()] == ["untrained", "n4-none", "n4-aug", "n8-none", "n8-aug"]
    for i, (name, _, _) in enumerate(cfg.students()):
        f1 = tmp_path / "f1" / name
        f1.mkdir(parents=True)
        macro = {"f1": 0.1 * i, "f1_ci95": [0.0, 0.1 * i + 0.05], "precision": 0.2, "recall": 0.1}
        (f1 / "f1.json").write_text(json.dumps({"headline": {"macro": macro}}))
        for seed in cfg.seeds:
            run = tmp_path / "ctr" / name / f"seed-{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({"test": {"auc": 0.7 + 0.01 * i + 0.002 * seed}}))
    points = [point_of(cfg, *s) for s in cfg.students()]
    assert points[2]["aucs"] == [0.72, 0.722] and points[2]["auc_std"] == pytest.approx(0.00141, abs=1e-5)
    write_jsonl(tmp_path / "points.jsonl", points)
    assert [p["name"] for p in read_points(tmp_path / "points.jsonl")] == [s[0] for s in cfg.students()]


def test_timings_come_from_the_step_records(tmp_path):
    cfg = StudyConfig(**DATA, out=tmp_path)
    record = {"step": "ctr", "seconds": 12.5, "load_avg_1m": 1.0, "date": "2026-12-06 10:00:00"}
    (tmp_path / "ctr").mkdir()
    (tmp_path / "ctr" / "n8-aug.step.json").write_text(json.dumps(record))
    assert timings(cfg) == [{"stage": "ctr: ctr/n8-aug", "seconds": 12.5, "load_avg_1m": 1.0, "date": record["date"]}]


@pytest.mark.parametrize("bad", [{"items": []}, {"augment": ["both"]}, {"seeds": []}, {"eval_items": 0}])
def test_the_study_config_refuses_bad_sizes(tmp_path, bad):
    with pytest.raises(ValueError):
        StudyConfig(**DATA, out=tmp_path, **bad)
