"""The F1-vs-AUC study (the MSD paper's Figure 4) on the bundled sample: pipeline/study.py says what it runs.

Default sizes: teacher answers for 32 items (students on the first 8, 16, 32, each without and with
augmentation: 7 students), 24 gold items answered per student, MSD on item vectors (user level with
--user-level), 3 seeds x at most 5 epochs. Every step is skipped when its output is done with the same config,
so an interrupted run resumes; --only splits the students between processes. A flag left out takes
StudyConfig's default.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from eval.correlate import PLOT_PNG
from ground.config import config_dict
from ground.runinfo import append_result
from pipeline.study import StudyConfig, run_study, timings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def record_result(cfg: StudyConfig, stats: dict) -> None:
    """One line in bench/results/f1_auc.jsonl (sizes, step times, correlation, points); the plot beside it."""
    steps = timings(cfg)
    points = [json.loads(line) for line in (cfg.out / "points.jsonl").read_text(encoding="utf-8").splitlines() if line]
    line = append_result(RESULTS / "f1_auc.jsonl", {
        "config": config_dict(cfg), "stage_seconds_total": round(sum(t["seconds"] for t in steps), 1), "timings": steps,
        "pearson": stats["pearson"], "spearman": stats["spearman"], "points": points})
    print(json.dumps(line, indent=2))
    shutil.copyfile(cfg.out / "correlate" / PLOT_PNG, RESULTS / "f1_auc.png")


def parse_args() -> tuple[StudyConfig, list[str] | None, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]
    names = lambda text: [x for x in text.split(",") if x]
    p.add_argument("--out", type=Path, help="output folder (default runs/f1_auc)")
    p.add_argument("--items", type=ints, help="teacher answers per trained student, comma list (default 8,16,32)")
    p.add_argument("--augment", type=names, help="none, aug or none,aug (default both)")
    p.add_argument("--seeds", type=ints, help="MSD seeds per student, comma list (default 0,1,2)")
    p.add_argument("--eval-items", type=int, help="gold items each student answers (default 24)")
    p.add_argument("--teacher", help="backend:model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--student", help="student base: hub id, folder or the embedded alias")
    p.add_argument("--epochs", type=float, help="LoRA SFT epochs (default 2)")
    p.add_argument("--ctr-epochs", type=int, help="MSD epochs, early stopping on val AUC (default 5)")
    p.add_argument("--batch-size", type=int, help="generation batch size")
    p.add_argument("--ctr-batch-size", type=int, help="MSD training batch size (default 256)")
    p.add_argument("--user-level", action="store_true",
                   help="MSD with the user-level vector too (embeds every user's history with each student: slow)")
    p.add_argument("--only", type=names, default=None,
                   help="run only these students (names as in points.jsonl), e.g. to split the work between "
                        "processes; shared steps run first either way")
    p.add_argument("--record", action="store_true", default=False,
                   help="append the result to bench/results/f1_auc.jsonl")
    flags = {"out": ROOT / "runs" / "f1_auc", **vars(p.parse_args())}
    only, record = flags.pop("only"), flags.pop("record")
    try:
        cfg = StudyConfig(sample=ROOT / "data" / "sample", gold=ROOT / "data" / "gold" / "gold.jsonl", **flags)
    except ValueError as e:
        p.error(str(e))
    unknown = sorted(set(only or []) - {name for name, _, _ in cfg.students()})
    if unknown:
        p.error(f"--only: no student named {unknown[0]!r}; students: {', '.join(n for n, _, _ in cfg.students())}")
    return cfg, only, record


if __name__ == "__main__":
    config, only, record = parse_args()
    stats = run_study(config, only)
    if record and stats is not None:
        record_result(config, stats)
