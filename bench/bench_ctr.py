"""CTR benchmark: DeepFM, DIN, MSD-DIN, MSD-DeepFM over seeds; MSD's ablations; training cost.

Every run is `ctr train` in its own process (so its peak RSS is its own) with the
same prepared split, features, history length and loop settings; a run folder
that already holds metrics.json is reused, so an interrupted bench resumes.
Prints a table and appends one JSON line per table to bench/results/ctr.jsonl,
with the dataset card's protocol, the settings and the machine (CPU shared
with other jobs: see the load average).

    python -m bench.bench_ctr --data /work/runs/prepared/ml-1m --knowledge EMB --label "..." \
        --runs /work/runs/ctr-model/bench/ml-1m --seeds 0,1,2 --tables main,ablation
    python -m bench.bench_ctr ... --tables lora --slice 256   # MSD with and without LoRA on a train slice
    python -m bench.bench_ctr ... --tables cost               # training speed and memory, fresh runs (idle machine)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import record

from ctr.metrics import mean_std, rela_impr

ROOT = Path(__file__).resolve().parents[1]
MAIN = {"DeepFM": ["--model", "deepfm"], "DIN": ["--model", "din"],
        "MSD-DIN": ["--model", "msd"], "MSD-DeepFM": ["--model", "msd-deepfm"]}
ABLATION = {"MSD-DIN (full, cached)": ["--model", "msd"],
            "w/o item fusion": ["--model", "msd", "--no-item-fusion"],
            "w/o user level": ["--model", "msd", "--no-user-level"]}
# The user level is off in both rows: the student reading every user text inside each step is out of reach on CPU.
LORA = {"MSD w/o user level, cached": ["--model", "msd", "--no-user-level"],
        "MSD w/o user level + LoRA": ["--model", "msd", "--no-user-level", "--lora"]}

# Training cost: one epoch each, measured fresh. The first two rows at the main table's settings on a train
# slice, the last two at the LoRA table's settings (where the student runs inside every step).
COST_MAIN = {"DIN": ["--model", "din"], "MSD-DIN, cached vectors": ["--model", "msd"]}
COST_LORA = {"MSD w/o user level, cached (LoRA settings)": LORA["MSD w/o user level, cached"],
             "MSD w/o user level + LoRA (LoRA settings)": LORA["MSD w/o user level + LoRA"]}


def train_run(run: Path, args: list[str]) -> dict:
    """metrics.json of `ctr train ARGS -o run`, training only when it is not there yet."""
    if not (run / "metrics.json").exists():
        print(f"-- ctr train {' '.join(args)} -o {run}", flush=True)
        subprocess.run([sys.executable, "-m", "ctr.cli", "train", *args, "-o", str(run)], cwd=ROOT, check=True)
    return json.loads((run / "metrics.json").read_text())


def summarise(runs: list[dict]) -> dict:
    """Mean +- std over seeds of the test figures, training speed and memory."""
    out = {k: mean_std([r["test"][k] for r in runs]) for k in ("auc", "gauc", "logloss")}
    out["samples_per_s"] = mean_std([r["samples_per_s"] for r in runs])
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["best_epochs"] = [r["best_epoch"] for r in runs]
    out["train_samples"] = runs[0]["train_samples"]
    out["test_samples"] = runs[0]["test"]["samples"]
    return out


def cost_table(args: argparse.Namespace, common: list[str], lora_base: list[str]) -> tuple[dict, str]:
    """Fresh one-epoch runs of DIN, MSD (cached) and MSD + LoRA: samples/s and peak RSS, and the table text."""
    cost_dir = args.runs / "cost"
    shutil.rmtree(cost_dir, ignore_errors=True)  # speed is measured now, never reused from an earlier run
    main_common = [*common, "--epochs", "1", "--max-train-samples", str(args.cost_slice)]
    rows = {**run_table("cost", COST_MAIN, main_common, cost_dir, [0]),
            **run_table("cost", COST_LORA, [*lora_base, "--max-train-samples", "64",
                                            "--max-eval-samples", "64"], cost_dir, [0])}
    lines = [f"{'run':44} {'samples/s':>10} {'peak RSS MB':>11} {'train rows':>10}"]
    lines += [f"{k:44} {v['samples_per_s']['mean']:>10,.1f} {v['peak_rss_mb']:>11,.0f} {v['train_samples']:>10,}"
              for k, v in rows.items()]
    return rows, "\n".join(lines)


def table(rows: dict[str, dict], base: str | None) -> str:
    lines = [f"{'model':28} {'AUC':>17} {'GAUC':>17} {'LogLoss':>17} {'RelaImpr':>9} {'samples/s':>10} {'RSS MB':>7} best epochs"]
    for name, s in rows.items():
        rel = f"{100 * rela_impr(s['auc']['mean'], rows[base]['auc']['mean']):+.2f}%" if base in rows else "-"
        cell = lambda m: f"{m['mean']:.4f} +- {m['std']:.4f}"  # noqa: E731
        lines.append(f"{name:28} {cell(s['auc']):>17} {cell(s['gauc']):>17} {cell(s['logloss']):>17} {rel:>9} "
                     f"{s['samples_per_s']['mean']:>10,.0f} {s['peak_rss_mb']:>7,.0f} {s['best_epochs']}")
    return "\n".join(lines)


def run_table(name: str, variants: dict[str, list[str]], common: list[str], runs: Path, seeds: list[int],
              done_only: bool = False) -> dict:
    # Folders are named by the arguments, so a run shared by two tables (MSD-DIN) trains once; seed by seed,
    # so a bench stopped early leaves every model with the same seeds done (rerun with fewer --seeds to tabulate).
    folders = {label: runs / ("lora-slice" if name == "lora" else "") / "_".join(a.lstrip("-") for a in args)
               for label, args in variants.items()}
    done = {label: [] for label in variants}
    for s in seeds:
        for label, args in variants.items():
            if done_only and not (folders[label] / f"seed-{s}" / "metrics.json").exists():
                continue
            done[label].append(train_run(folders[label] / f"seed-{s}", [*common, *args, "--seed", str(s)]))
    return {label: summarise(runs_) for label, runs_ in done.items() if runs_}


def run_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options every CTR bench shares: prepared data, knowledge tables, their label, run folder, seeds."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--knowledge", type=Path, required=True)
    p.add_argument("--label", required=True, help="What the knowledge vectors are (stated in the results).")
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--seeds", default="0,1,2")
    return p


def main() -> None:
    p = run_arguments(__doc__)
    p.add_argument("--tables", default="main,ablation")
    p.add_argument("--slice", type=int, default=128, help="Train rows for the LoRA table.")
    p.add_argument("--eval-slice", type=int, default=256, help="Val / test rows for the LoRA table.")
    p.add_argument("--train-args", default="--embed-dim 8 --max-history 20 --epochs 2 --patience 1 --batch-size 1024",
                   help="Settings every run shares.")
    p.add_argument("--done-only", action="store_true", help="Tabulate the finished runs only (n per row is stated).")
    p.add_argument("--extra-rows", default="", help="Comma list of NAME=ARGS rows added to the main/ablation table, "
                   "e.g. 'MSD-DIN raw vectors=--model msd --raw-vectors'.")
    p.add_argument("--cost-slice", type=int, default=50000, help="Train rows of the cost table's DIN/MSD runs.")
    p.add_argument("--lora-args", default="--embed-dim 8 --batch-size 8 --max-history 3 --epochs 1 --lr 0.001")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    card = json.loads((args.data / "card.json").read_text())
    common = ["--data", str(args.data), "--knowledge", str(args.knowledge), *args.train_args.split()]
    lora_base = ["--data", str(args.data), "--knowledge", str(args.knowledge), *args.lora_args.split()]
    lora_common = [*lora_base,
                   "--max-train-samples", str(args.slice), "--max-eval-samples", str(args.eval_slice)]
    for name in args.tables.split(","):
        if name == "cost":
            rows, text = cost_table(args, common, lora_base)
            print(f"\n{card.get('title', card['dataset'])}: training cost (1 epoch, seed 0)\n{text}\n", flush=True)
            record("ctr", {"table": "cost", "dataset": card.get("title", card["dataset"]), "data": str(args.data),
                           "knowledge": {"folder": str(args.knowledge), "label": args.label},
                           "settings": {"main": args.train_args, "cost_slice": args.cost_slice,
                                        "lora": args.lora_args + " (64 train rows)"},
                           "rows": rows, "printed": text})
            continue
        if name == "lora":
            rows, settings = run_table("lora", LORA, lora_common, args.runs, seeds, args.done_only), lora_common
        else:
            extra = dict(row.split("=", 1) for row in args.extra_rows.split(",") if row)
            variants = {**(MAIN if name == "main" else ABLATION), **{k: v.split() for k, v in extra.items()}}
            rows, settings = run_table(name, variants, common, args.runs, seeds, args.done_only), common
        base = "DeepFM" if name == "main" else next(iter(rows))
        text = table(rows, base)
        print(f"\n{card.get('title', card['dataset'])}: {name} (seeds {seeds}; RelaImpr vs {base})\n{text}\n", flush=True)
        record("ctr", {"table": name, "dataset": card.get("title", card["dataset"]), "data": str(args.data),
                       "protocol": card["protocol"], "fields": card["fields"], "splits": card["splits"],
                       "knowledge": {"folder": str(args.knowledge), "label": args.label}, "seeds": seeds,
                       "settings": " ".join(settings[4:] if settings[0] == "--data" else settings),
                       "relaimpr_base": base, "rows": rows, "printed": text})


if __name__ == "__main__":
    main()
