"""Peer check of our DIN: torch-rechub's DIN (optional `bench` extra) on the exact same split and features.

Both models get the same tensors from ctr/data.py: user_id + user fields; the
target item as item_id + item fields; its history (the same last N items) as a
sequence per item field sharing the target's embedding table; the same
embedding width, MLP and attention MLP sizes, MLP dropout, Adam at the same rate and
weight decay, the same epochs and early stopping on validation AUC. torch-rechub's own
trainer (CTRTrainer: BCELoss on probabilities) trains its model; ours is
`ctr train --model din` with the same settings.

`--config` runs both at a tuned DIN's settings (bench_ctr.py's RUNS/tune/din/best/config.yaml); our runs are then
the ones beside it (RUNS/tune/din/best/seed-N, trained only where missing):

    python -m bench.bench_ctr_peer --data /work/runs/prepared/ml-1m --runs RUNS --seeds 0 \
        --config RUNS/tune/din/best/config.yaml --train-args "--max-history 20 --epochs 30 --patience 2 --batch-size 1024"
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.bench_ctr import train_run
from bench.common import record
from ground.config import load_yaml
from ground.runinfo import peak_rss_mb

from ctr.metrics import ctr_metrics, mean_std
from ctr.runs import load_data
from ctr.train import set_seed
from ctr.train_config import CTRConfig
from ctr.data import build_split


def rechub_inputs(split, catalogue, features) -> dict:
    """x dict of torch-rechub: one column per sparse field, one (N, L) column per history field."""
    x = {f: split.user[:, j].numpy() for j, f in enumerate(features.user_fields)}
    target = catalogue.item_table[split.item]  # (N, Fi)
    history = catalogue.item_table[split.history.long()]  # (N, L, Fi); key 0 -> row 0 = padding ids
    for j, f in enumerate(features.item_fields):
        x[f] = target[:, j].numpy()
        x[f"hist_{f}"] = history[:, :, j].numpy()
    return x


def rechub_din(features, config: CTRConfig):
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.ranking import DIN

    sizes = dict(zip(features.user_fields + features.item_fields,
                     features.sizes(features.user_fields) + features.sizes(features.item_fields)))
    dim = config.embed_dim
    users = [SparseFeature(f, sizes[f], embed_dim=dim) for f in features.user_fields]
    targets = [SparseFeature(f, sizes[f], embed_dim=dim) for f in features.item_fields]
    history = [SequenceFeature(f"hist_{f}", sizes[f], embed_dim=dim, pooling="concat", shared_with=f, padding_idx=0)
               for f in features.item_fields]
    return DIN(features=users, history_features=history, target_features=targets,
               mlp_params={"dims": config.hidden, "dropout": config.dropout},
               attention_mlp_params={"dims": config.attention_hidden})


def run_peer(config: CTRConfig, seed: int) -> dict:
    from torch_rechub.trainers import CTRTrainer
    from torch_rechub.utils.data import DataGenerator

    set_seed(seed)
    data, features, catalogue, max_history = load_data(config)
    splits = {n: build_split(data, n, features, max_history) for n in ("train", "val", "test")}
    xs = {n: rechub_inputs(s, catalogue, features) for n, s in splits.items()}
    loaders = DataGenerator(xs["train"], splits["train"].label.numpy()).generate_dataloader(
        xs["val"], splits["val"].label.numpy(), xs["test"], splits["test"].label.numpy(), batch_size=config.batch_size)
    model = rechub_din(features, config)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = CTRTrainer(model, optimizer_params={"lr": config.learning_rate, "weight_decay": config.weight_decay},
                             n_epoch=config.epochs, earlystop_patience=config.patience, model_path=tmp)
        start = time.perf_counter()
        trainer.fit(loaders[0], loaders[1])
        seconds = time.perf_counter() - start
    probs = trainer.predict(model, loaders[2])
    test = splits["test"]
    return {"test": ctr_metrics(test.label.numpy(), __import__("numpy").asarray(probs).reshape(-1), test.user_ids),
            "fit_seconds_incl_val": round(seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True, help="bench_ctr.py runs folder (our DIN runs are reused).")
    p.add_argument("--knowledge", type=Path, default=None, help="As given to bench_ctr.py (unused by DIN).")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train-args", default="--embed-dim 8 --max-history 20 --epochs 2 --patience 1 --batch-size 1024")
    p.add_argument("--config", type=Path, default=None, help="A tuned DIN's config.yaml: both models at its settings; "
                   "our runs are the seed-N folders beside it.")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    flags = args.train_args.split()
    value = lambda name: flags[flags.index(name) + 1]  # noqa: E731
    tuned = load_yaml(args.config, CTRConfig) if args.config else {"embed_dim": int(value("--embed-dim"))}
    config = CTRConfig(**{**tuned, "data": str(args.data), "output": "unused", "model": "din",
                          "max_history": int(value("--max-history")), "epochs": int(value("--epochs")),
                          "patience": int(value("--patience")), "batch_size": int(value("--batch-size"))})
    seeds = [int(s) for s in args.seeds.split(",")]
    knowledge = ["--knowledge", str(args.knowledge)] if args.knowledge else []
    peer = [run_peer(config, s) for s in seeds]
    if args.config:  # as bench_ctr.py trained them (its retrain / tune stage)
        ours = [train_run(args.config.parent / f"seed-{s}", ["--data", str(args.data), *flags, "--model", "din",
                                                             "--config", str(args.config), "--seed", str(s)])
                for s in seeds]
    else:
        ours = [train_run(args.runs / "peer-ours" / "_".join(a.lstrip("-") for a in flags) / f"seed-{s}",
                          ["--data", str(args.data), *knowledge, *flags, "--model", "din", "--seed", str(s)])
                for s in seeds]
    rows = {name: {k: mean_std([r["test"][k] for r in runs]) for k in ("auc", "gauc", "logloss")}
            for name, runs in (("ours (ctr din)", ours), ("torch-rechub 0.9.0 DIN", peer))}
    gap = rows["ours (ctr din)"]["auc"]["mean"] - rows["torch-rechub 0.9.0 DIN"]["auc"]["mean"]
    card = json.loads((args.data / "card.json").read_text())
    text = "\n".join(f"{n:24} AUC {r['auc']['mean']:.4f} +- {r['auc']['std']:.4f}  GAUC {r['gauc']['mean']:.4f}  "
                     f"LogLoss {r['logloss']['mean']:.4f}" for n, r in rows.items()) + f"\nours - peer AUC: {gap:+.4f}"
    print(text)
    record("ctr", {"table": "peer", "dataset": card.get("title", card["dataset"]), "data": str(args.data),
                   "protocol": card["protocol"], "seeds": seeds, "settings": args.train_args,
                   "config": {k: getattr(config, k) for k in ("embed_dim", "hidden", "attention_hidden", "dropout",
                                                              "learning_rate", "weight_decay")},
                   "config_from": str(args.config) if args.config else None,
                   "peer": "torch-rechub 0.9.0 models.ranking.DIN + trainers.CTRTrainer (Dice, BatchNorm in its MLPs, "
                           "no padding mask in its attention, BCELoss)", "rows": rows, "auc_gap_ours_minus_peer": gap,
                   "peer_fit_seconds": [r["fit_seconds_incl_val"] for r in peer], "peak_rss_mb": peak_rss_mb(),
                   "printed": text})


if __name__ == "__main__":
    main()
