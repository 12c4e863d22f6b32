"""Is the student at its teacher's level? Key-phrase F1 of student answers beside their teacher's on data/gold.

Scores answer files that already exist (make them with `distill generate` / `kgen generate` on the gold inputs):
per level, the teacher, each student and the name-words baseline, macro F1 with bootstrap 95% intervals, and each
student's F1 as a ratio to the teacher's (paired bootstrap over the same gold records), optionally also on the gold
records outside a tuning subset. Prints a table and appends one line to bench/results/student_teacher.jsonl.

    python -m bench.bench_student_teacher --teacher item=teacher_items.jsonl --teacher user=teacher_users.jsonl \
        --student "trained, penalty 1.15" item=items_pen.jsonl user=users_pen.jsonl \
        --student "untrained" item=untrained_items.jsonl --held-out-from tuning_gold.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import record

from eval.baselines import baseline_records
from eval.embedder import Embedder
from eval.f1_report import evaluate_f1, headline_figures
from eval.paired import format_ratio, paired_f1_ratio, per_item_f1, rounded
from ground import records as R
from kgen.models import EMBEDDED_EMBEDDER

GOLD = Path(__file__).resolve().parents[1] / "data" / "gold" / "gold.jsonl"


def level_files(pairs: list[str]) -> dict[str, Path]:
    """["item=a.jsonl", "user=b.jsonl"] -> {"item": Path("a.jsonl"), ...}"""
    out = {}
    for pair in pairs:
        level, _, path = pair.partition("=")
        if level not in R.LEVELS or not path:
            raise SystemExit(f"expected LEVEL=FILE with LEVEL item or user, got {pair!r}")
        out[level] = Path(path)
    return out


def score(rows: list[dict], gold: list[dict], encoder: Embedder, level: str) -> tuple[dict, dict]:
    """(headline macro figures, per-record F1) of one answer set at one level."""
    report = evaluate_f1(rows, gold, encoder, seed=0, level=level)
    return headline_figures(report), per_item_f1(report["per_item"])


def ratio(student: dict, teacher: dict, keep=lambda key: True) -> dict:
    pick = lambda d: {k: v for k, v in d.items() if keep(k)}
    return rounded(paired_f1_ratio(pick(student), pick(teacher), n_boot=1000, seed=0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", nargs="+", required=True, help="LEVEL=FILE of the teacher's answers")
    p.add_argument("--student", nargs="+", action="append", required=True,
                   help="NAME LEVEL=FILE [LEVEL=FILE]; repeat the flag per student")
    p.add_argument("--gold", type=Path, default=GOLD)
    p.add_argument("--held-out-from", type=Path, default=None,
                   help="gold JSONL of the records a setting was tuned on: ratios are also given without them")
    p.add_argument("--note", default="", help="what the students are (stated in the results)")
    a = p.parse_args()
    gold = R.read_records(a.gold, "gold")
    tuned = ({(str(g[R.LEVEL]), str(g[R.ID])) for g in R.read_records(a.held_out_from, "gold")}
             if a.held_out_from else set())
    encoder = Embedder(EMBEDDED_EMBEDDER)
    teacher_files = level_files(a.teacher)
    results: dict = {"teacher": {}, "baseline_name_words": {}, "students": {}}
    teacher_items: dict = {}
    for level, path in teacher_files.items():
        results["teacher"][level], teacher_items[level] = score(R.read_records(path, "knowledge"), gold, encoder, level)
        results["baseline_name_words"][level] = score(baseline_records(gold), gold, encoder, level)[0]
    lines = [f"{'answers':<44} {'level':<5} {'F1':>6}  {'95% CI':<16} ratio to teacher"]
    for level in teacher_files:
        for name in ("teacher", "baseline_name_words"):
            f = results[name][level]
            lines.append(f"{name:<44} {level:<5} {f['f1']:>6.3f}  [{f['f1_ci95'][0]:.3f}, {f['f1_ci95'][1]:.3f}]")
    for name, *pairs in a.student:
        entry = results["students"][name] = {}
        for level, path in level_files(pairs).items():
            figures, items = score(R.read_records(path, "knowledge"), gold, encoder, level)
            figures["over_teacher"] = ratio(items, teacher_items[level])
            if tuned:
                figures["over_teacher_held_out"] = ratio(items, teacher_items[level], lambda k: k not in tuned)
            entry[level] = {"file": str(path), **figures}
            held = f"; held out: {format_ratio(figures['over_teacher_held_out'])}" if tuned else ""
            lines.append(f"{name:<44} {level:<5} {figures['f1']:>6.3f}  [{figures['f1_ci95'][0]:.3f}, "
                         f"{figures['f1_ci95'][1]:.3f}] {format_ratio(figures['over_teacher'])}{held}")
    text = "\n".join(lines)
    print(text)
    record("student_teacher", {"gold": str(a.gold), "teacher": {k: str(v) for k, v in teacher_files.items()},
                               "held_out_from": str(a.held_out_from) if a.held_out_from else None, "note": a.note,
                               **results, "printed": text})


if __name__ == "__main__":
    main()
