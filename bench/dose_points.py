"""Figure 4 from the dose-response series (issue 25.5): knowledge quality against CTR AUC, knowledge by knowledge.

    python -m bench.dose_points --reference bench/knowledge/ml-1m/items.jsonl.gz \
        --point "teacher=bench/knowledge/ml-1m/items.jsonl.gz=RUNS/vectors/MSD-DIN__KAR__..." \
        --point "25% replaced=DOSE25.jsonl.gz=RUNS/vectors/MSD-DIN__KAR__25__of_values_replaced" ... -o OUT

Each --point is NAME=KNOWLEDGE=RUN_FOLDER: a knowledge file (a dose of bench/knowledge_dose.py, or a student's
answers) and the folder of the CTR runs trained on its vectors (seed-N/metrics.json, as bench_ctr's vectors stage
writes them). Its F1 is the key-phrase F1 (eval, macro, one-to-one at tau) of its key phrases against the
reference's (the teacher's own, so the undosed teacher scores 1 by construction); its AUC the test AUC of each
seed. The points go to OUT/points.jsonl and through `eval correlate` (Pearson and Spearman with bootstrap
intervals over the points, a permutation p-value, the plot OUT/f1_auc.png); one row is appended to
bench/results/dose.jsonl. Only the seeds every point has are used.
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


def build_points(reference: Path, points: list[tuple[str, Path, Path]], embedder, n_boot: int) -> list[dict]:
    # as gold: the reference's key phrases alone (a gold record's explicit / implicit are typed phrase lists)
    gold = [{R.LEVEL: r[R.LEVEL], R.ID: r[R.ID], R.KEY_PHRASES: r[R.KEY_PHRASES]}
            for r in R.read_records(reference, "knowledge") if r[R.STATUS] == "ok"]
    aucs = {name: seed_aucs(folder) for name, _, folder in points}
    seeds = sorted(set.intersection(*(set(a) for a in aucs.values())))
    if not seeds:
        raise SystemExit("no seed has a finished run in every point's folder: " +
                         ", ".join(f"{name}: {sorted(a)}" for name, a in aucs.items()))
    out = []
    for name, knowledge, _ in points:
        report = evaluate_f1(R.read_records(knowledge, "knowledge"), gold, embedder, n_boot=n_boot)
        head = headline_figures(report)
        values = [aucs[name][s] for s in seeds]
        out.append({"name": name, "f1": head["f1"], "f1_ci95": head["f1_ci95"], "auc_mean": float(np.mean(values)),
                    "auc_std": float(np.std(values)), "aucs": values, "n_seeds": len(values), "seeds": seeds,
                    "knowledge": str(knowledge), "items_scored": head["n_items"]})
        print(f"{name}: F1 {head['f1']:.3f} {head['f1_ci95']}, test AUC {np.mean(values):.4f} over seeds {seeds}",
              flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="The knowledge F1 is measured against.")
    p.add_argument("--point", action="append", required=True, metavar="NAME=KNOWLEDGE=RUN_FOLDER")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--n-boot", type=int, default=200, help="Bootstrap draws of each F1 interval.")
    p.add_argument("--title", default="")
    a = p.parse_args()
    points = build_points(a.reference, [parse_point(t) for t in a.point], Embedder(), a.n_boot)
    a.output.mkdir(parents=True, exist_ok=True)
    path = a.output / "points.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in points))
    stats = write_report(path, a.output, title=a.title)
    record("dose", {"reference": str(a.reference), "points": points, "correlation": stats, "output": str(a.output)})
    print(json.dumps({k: stats[k] for k in ("pearson", "spearman") if k in stats}))


if __name__ == "__main__":
    main()
