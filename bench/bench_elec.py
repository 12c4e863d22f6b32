"""ELEC benchmark: how much of the gain network's lift survives in the vanilla network that is served without the LLM.

Rows, each mean +- std over seeds on the test split: the backbone alone (DIN), the
gain network (MSD-DIN inside ELEC), the vanilla network after distillation (what
is served), and the vanilla network with score or representation distillation
switched off. One ELEC run gives both its gain and its vanilla row.

The prepared folder is read once and every run trains in this process (`ctr train`'s
own fit / score functions, the same split, features and settings for every row):
on the shared 2-core machine reading ML-1M costs ~90 s, as much as a sliced run.
A run folder that holds metrics.json is reused, so an interrupted bench resumes.
Prints a table and appends one JSON line to bench/results/elec.jsonl.

    python -m bench.bench_elec --data /work/runs/prepared/ml-1m --knowledge EMB --label "..." \
        --runs /work/runs/elec/bench/ml-1m --seeds 0,1,2 --max-train-samples 60000
"""

from __future__ import annotations

import json
import time

import torch

from bench.bench_ctr import run_arguments, summarise, table
from bench.common import record
from ground.runinfo import peak_rss_mb

from ctr.data import build_split
from ctr.elec import ELEC
from ctr.build import build_model
from ctr.runs import load_data
from ctr.train import fit, score, set_seed
from ctr.train_config import CTRConfig
from ground.files import write_json

# run name -> CTRConfig fields beyond the shared settings
RUNS = {"din": {"model": "din"}, "elec": {"model": "elec"},
        "elec-no-score": {"model": "elec", "distill_score_weight": 0.0},
        "elec-no-repr": {"model": "elec", "distill_repr_weight": 0.0}}
# table row -> (run name, which network's figures)
ROWS = {"DIN (backbone alone)": ("din", "test"), "gain (MSD-DIN in ELEC)": ("elec", "gain"),
        "vanilla distilled": ("elec", "test"), "vanilla w/o score dist.": ("elec-no-score", "test"),
        "vanilla w/o repr dist.": ("elec-no-repr", "test")}


def train_in_process(config: CTRConfig, loaded, splits: dict) -> dict:
    """What `ctr train` records, for one config, on splits already built (weights are not saved)."""
    set_seed(config.seed)
    data, features, catalogue, _ = loaded
    model = build_model(config, features, catalogue, data)
    result = fit(model, splits["train"], splits["val"], config)
    model.load_state_dict(result.best_state, strict=False)
    metrics = {"model": config.model, "seed": config.seed, "best_epoch": result.best_epoch, "history": result.history,
               "val": score(model, splits["val"], config.eval_batch_size),
               "test": score(model, splits["test"], config.eval_batch_size), "train_samples": len(splits["train"]),
               "samples_per_s": round(len(splits["train"]) * len(result.history) / result.train_seconds, 1),
               "peak_rss_mb": peak_rss_mb(), "config": config.to_dict()}
    if isinstance(model, ELEC):
        metrics["gain"] = {name: score(model.gain, splits[name], config.eval_batch_size) for name in ("val", "test")}
    return metrics


def run_all(args, settings: dict, seeds: list[int]) -> dict[str, list[dict]]:
    """{run name: [metrics per seed]}, training only what is not in --runs yet (none with --no-train).

    Seed-major order, so a bench cut short has every row at its first seeds rather than some rows at none.
    """
    base = CTRConfig(**settings, output=str(args.runs))
    loaded = None
    out: dict[str, list[dict]] = {}
    for seed in seeds:
        for name, fields in RUNS.items():
            path = args.runs / name / f"seed-{seed}" / "metrics.json"
            if not path.exists() and (args.no_train or (args.only and name not in args.only)):
                continue
            if not path.exists():
                if loaded is None:
                    start = time.perf_counter()
                    loaded = load_data(base)
                    limits = {"train": args.max_train_samples, "val": args.max_eval_samples,
                              "test": args.max_eval_samples}
                    splits = {s: build_split(loaded[0], s, loaded[1], loaded[3], limits[s]) for s in limits}
                    print(f"data read in {time.perf_counter() - start:.0f} s", flush=True)
                print(f"-- {name} seed {seed}", flush=True)
                config = CTRConfig(**{**settings, **fields, "seed": seed, "output": str(path.parent)})
                write_json(path, train_in_process(config, loaded, splits))
            out.setdefault(name, []).append(json.loads(path.read_text()))
    return out


def main() -> None:
    p = run_arguments(__doc__)
    p.add_argument("--max-train-samples", type=int, default=None, help="The first N train rows (same for every row).")
    p.add_argument("--max-eval-samples", type=int, default=None, help="The first N val / test rows.")
    p.add_argument("--no-train", action="store_true", help="Only summarise the runs already in --runs.")
    p.add_argument("--only", nargs="*", choices=list(RUNS), help="Train only these runs (parallel processes).")
    p.add_argument("--settings", default='{"embed_dim": 8, "max_history": 20, "epochs": 2, "patience": 1, '
                                         '"batch_size": 1024}', help="JSON of CTRConfig fields every run shares.")
    args = p.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = {**json.loads(args.settings), "data": str(args.data), "knowledge": str(args.knowledge)}
    runs = run_all(args, settings, seeds)
    rows = {label: summarise([{**r, "test": r["gain"]["test"]} if part == "gain" else r for r in runs[name]])
            for label, (name, part) in ROWS.items() if name in runs}
    card = json.loads((args.data / "card.json").read_text())
    text = table(rows, "DIN (backbone alone)") + "\nseeds per row: " + ", ".join(
        f"{label} {[r['seed'] for r in runs[name]]}" for label, (name, _) in ROWS.items() if name in runs)
    print(f"\n{card.get('title', card['dataset'])}: ELEC (seeds {seeds}; RelaImpr vs DIN)\n{text}\n", flush=True)
    defaults = CTRConfig(data="-", output="-", model="elec", knowledge="-")
    record("elec", {"dataset": card.get("title", card["dataset"]), "data": str(args.data),
                    "protocol": card["protocol"], "splits": card["splits"], "seeds": seeds,
                    "knowledge": {"folder": str(args.knowledge), "label": args.label},
                    "settings": settings, "max_train_samples": args.max_train_samples,
                    "max_eval_samples": args.max_eval_samples,
                    "distillation": {k: getattr(defaults, k) for k in
                                     ("distill_score_weight", "distill_repr_weight", "distill_temperature")},
                    "rows": rows, "printed": text})


if __name__ == "__main__":
    main()
