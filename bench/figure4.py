"""Figure 4 (issue 25.5): knowledge quality against CTR AUC, one point per knowledge (a dose or a student).

    python -m bench.figure4 --reference bench/knowledge/ml-1m/items.jsonl.gz --gold data/gold/ml-1m.jsonl \
        --point "teacher=bench/knowledge/ml-1m/items.jsonl.gz=RUNS/vectors/MSD-DIN__KAR__..." \
        --point "25% replaced=DOSE25.jsonl.gz=RUNS/vectors/MSD-DIN__KAR__25__of_values_replaced" ... -o OUT

Each --point is NAME=KNOWLEDGE=RUN_FOLDER: a knowledge file (a dose of bench/knowledge_dose.py, or a student's
answers) and the folder of the CTR runs trained on its vectors (seed-N/metrics.json, as bench_ctr writes them).
Its F1 is the key-phrase F1 (eval, macro, one-to-one at tau) of its key phrases against the reference's (the
teacher's own, so the undosed teacher scores 1 by construction) and, with --gold, against the gold key phrases;
its AUC the test AUC of each seed. Only the items every point answered (a student may answer its held-out items
alone) and the seeds every point has are used. The points go to OUT/points.jsonl and through `eval correlate`
(Pearson and Spearman with bootstrap intervals over the points, a permutation p-value, the plot
OUT/f1_auc.png); with --gold the same against the gold F1 in OUT/gold/. One row goes to
bench/results/figure4.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.common import record
from eval.correlate import write_report
from eval.embedder import Embedder
from eval.f1_report import evaluate_f1, headline_figures
from ground import records as R


def parse_point(text: str) -> tuple[str, Path, Path]:
    parts = text.split("=")
    if len(parts) != 3 or not all(parts):
        raise SystemExit(f"--point takes NAME=KNOWLEDGE=RUN_FOLDER, got {text!r}")
    return parts[0], Path(parts[1]), Path(parts[2])


def seed_aucs(folder: Path) -> dict[int, float]:
    """seed -> test AUC of each finished run in folder (seed-N/metrics.json)."""
    out = {}
    for metrics in sorted(folder.glob("seed-*/metrics.json")):
        out[int(metrics.parent.name.split("-")[1])] = json.loads(metrics.read_text())["test"]["auc"]
    return out


def answered(knowledge: Path) -> tuple[list[dict], set[tuple[str, str]]]:
    rows = R.read_records(knowledge, "knowledge")
    return rows, {(r[R.LEVEL], r[R.ID]) for r in rows}


def f1_of(rows: list[dict], gold: list[dict], embedder, n_boot: int) -> dict:
    return headline_figures(evaluate_f1(rows, gold, embedder, n_boot=n_boot))


def build_points(reference: Path, points: list[tuple[str, Path, Path]], embedder, n_boot: int,
                 gold: Path | None = None) -> list[dict]:
    # as gold: the reference's key phrases alone (a gold record's explicit / implicit are typed phrase lists)
    teacher = {(r[R.LEVEL], r[R.ID]): {R.LEVEL: r[R.LEVEL], R.ID: r[R.ID], R.KEY_PHRASES: r[R.KEY_PHRASES]}
               for r in R.read_records(reference, "knowledge") if r[R.STATUS] == "ok"}
    aucs = {name: seed_aucs(folder) for name, _, folder in points}
    seeds = sorted(set.intersection(*(set(a) for a in aucs.values())))
    if not seeds:
        raise SystemExit("no seed has a finished run in every point's folder: " +
                         ", ".join(f"{name}: {sorted(a)}" for name, a in aucs.items()))
    knowledge = {name: answered(path) for name, path, _ in points}
    common = set(teacher).intersection(*(keys for _, keys in knowledge.values()))
    if not common:
        raise SystemExit(f"no item of {reference} is answered by every point")
    gold_rows = [g for g in R.read_records(gold, "gold") if (g[R.LEVEL], g[R.ID]) in common] if gold else []
    if gold and not gold_rows:
        raise SystemExit(f"{gold}: none of its records is an item every point answered")
    out = []
    for name, path, _ in points:
        rows = [r for r in knowledge[name][0] if (r[R.LEVEL], r[R.ID]) in common]
        head = f1_of(rows, [teacher[k] for k in sorted(common)], embedder, n_boot)
        values = [aucs[name][s] for s in seeds]
        point = {"name": name, "f1": head["f1"], "f1_ci95": head["f1_ci95"], "auc_mean": float(np.mean(values)),
                 "auc_std": float(np.std(values)), "aucs": values, "n_seeds": len(values), "seeds": seeds,
                 "knowledge": str(path), "items_scored": head["n_items"]}
        if gold_rows:
            on_gold = f1_of(rows, gold_rows, embedder, n_boot)
            point |= {"f1_gold": on_gold["f1"], "f1_gold_ci95": on_gold["f1_ci95"], "gold_items": on_gold["n_items"]}
        out.append(point)
        also = f", F1 on gold {point['f1_gold']:.3f} {point['f1_gold_ci95']}" if gold_rows else ""
        print(f"{name}: F1 {head['f1']:.3f} {head['f1_ci95']} on {head['n_items']} items{also}, "
              f"test AUC {np.mean(values):.4f} over seeds {seeds}", flush=True)
    return out


def write_points(points: list[dict], output: Path, title: str, x_label: str) -> dict:
    output.mkdir(parents=True, exist_ok=True)
    path = output / "points.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in points))
    return write_report(path, output, title=title, x_label=x_label)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="The knowledge F1 is measured against.")
    p.add_argument("--gold", type=Path, help="Gold key phrases (data/gold/...): also F1 against them.")
    p.add_argument("--point", action="append", required=True, metavar="NAME=KNOWLEDGE=RUN_FOLDER")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--n-boot", type=int, default=200, help="Bootstrap draws of each F1 interval.")
    p.add_argument("--title", default="")
    a = p.parse_args()
    points = build_points(a.reference, [parse_point(t) for t in a.point], Embedder(), a.n_boot, a.gold)
    stats = {"reference": write_points(points, a.output, a.title, "key-phrase F1 against the teacher's knowledge")}
    if a.gold:
        on_gold = [p | {"f1": p["f1_gold"], "f1_ci95": p["f1_gold_ci95"]} for p in points]
        stats["gold"] = write_points(on_gold, a.output / "gold", a.title, f"key-phrase F1 against {a.gold}")
    record("figure4", {"reference": str(a.reference), "gold": str(a.gold) if a.gold else None, "points": points,
                       "correlation": stats, "output": str(a.output)})
    print(json.dumps({against: {k: s[k] for k in ("pearson", "spearman") if k in s} for against, s in stats.items()}))
    print(f"wrote {a.output}/points.jsonl and f1_auc.png" + (f" ({a.output}/gold/ against {a.gold})" if a.gold else ""))


if __name__ == "__main__":
    main()
