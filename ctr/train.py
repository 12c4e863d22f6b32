"""One plain CTR training loop: seeded, Adam, early stopping on validation AUC, best weights kept.

Under torchrun / `accelerate launch` it trains with DistributedDataParallel over
ctr.distributed's ranks (see docs/ctr.md, "Several processes"): `batch_size` is the
global batch, each rank trains on its share of it, evaluation is sharded and
gathered, and only rank 0 prints and writes.

A run folder holds model.pt (the trainable weights: LoRA adapters included, the
frozen student and knowledge tables excluded, both rebuilt from the config),
ctr_config.json, features.json (the train-split vocabularies) and metrics.json.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ctr import distributed as D
from ctr.build import build_model
from ctr.data import Batch, Split, batch_of, batches, build_split
from ctr.metrics import ctr_metrics, mean_std
from ctr.runs import METRICS, flush_denormals, load_data, load_run, save_run
from ctr.slices import auc_text, format_slices, slice_masks, slice_metrics
from ctr.train_config import CTRConfig
from ground.runinfo import peak_rss_mb
from ground.errors import ConfigError
from ground.files import write_json

def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def predict(model: nn.Module, split: Split, batch_size: int) -> np.ndarray:
    """(N,) click probabilities: the only place a sigmoid is applied.

    Under a launcher rank r scores batches r, r + world, ... and every rank gets them all back:
    the same batches as one process, so the same probabilities and AUC.
    """
    model.eval()
    starts = range(D.rank() * batch_size, len(split), D.world() * batch_size)
    with torch.no_grad():
        mine = {s: torch.sigmoid(model(batch_of(split, torch.arange(s, min(s + batch_size, len(split)))))).numpy()
                for s in starts}
    out = {s: probs for part in D.all_gather(mine) for s, probs in part.items()}
    return np.concatenate([out[s] for s in sorted(out)]) if out else np.zeros(0, np.float32)


def score(model: nn.Module, split: Split, batch_size: int, masks: dict | None = None) -> dict:
    """AUC, GAUC, LogLoss (and the slices' AUC when their masks are given) of a model on a split."""
    probs = predict(model, split, batch_size)
    return scored(split, probs, masks)


def scored(split: Split, probs: np.ndarray, masks: dict | None) -> dict:
    labels = split.label.numpy()
    out = ctr_metrics(labels, probs, split.user_ids)
    if masks is not None:
        out["slices"] = slice_metrics(labels, probs, masks)
    return out


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the trainable weights (what model.pt holds)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def optimizer(model: nn.Module, config: CTRConfig) -> torch.optim.Optimizer:
    """Adam; LoRA adapters of the student get their own (smaller) learning rate."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    lora = [p for n, p in named if n.startswith("vectors.")]
    rest = [p for n, p in named if not n.startswith("vectors.")]
    groups = [{"params": rest}] + ([{"params": lora, "lr": config.lora_learning_rate}] if lora else [])
    return torch.optim.Adam(groups, lr=config.learning_rate, weight_decay=config.weight_decay)


class TrainLoss(nn.Module):
    """The training loss as a forward pass (BCE; ELEC: its four-term sum), the call DDP hooks to average gradients."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        own = getattr(self.model, "training_loss", None)  # a model with a loss of its own (ELEC) says so itself
        return own(batch) if own else F.binary_cross_entropy_with_logits(self.model(batch), batch.label)


def train_epoch(loss_fn: nn.Module, split: Split, opt: torch.optim.Optimizer, config: CTRConfig,
                generator: torch.Generator) -> float:
    """One pass over the train split (this rank's share of each global batch); returns the mean loss over ranks."""
    loss_fn.train()
    total, count = 0.0, 0
    # every rank draws the same permutation from the same generator, then takes its share of it
    for batch in batches(split, config.batch_size // D.world(), shuffle=True, generator=generator,
                         part=D.rank(), parts=D.world()):
        loss = loss_fn(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total, count = total + loss.item() * len(batch.label), count + len(batch.label)
    total, count = D.all_sum([total, count])
    return total / max(count, 1)


@dataclass(kw_only=True)
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict]
    train_seconds: float


def fit(model: nn.Module, train: Split, val: Split, config: CTRConfig) -> FitResult:
    """Epochs until validation AUC has not improved for `patience` epochs; keeps the best weights."""
    opt, generator = optimizer(model, config), torch.Generator().manual_seed(config.seed)
    loss_fn = D.wrap(TrainLoss(model))
    best_auc, best_epoch, best_state, history, seconds = -1.0, 0, trainable_state(model), [], 0.0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        loss = train_epoch(loss_fn, train, opt, config, generator)
        elapsed = time.perf_counter() - start
        seconds += elapsed
        val_auc = D.broadcast(score(model, val, config.eval_batch_size)["auc"] or 0.0)  # all ranks stop together
        better = val_auc > best_auc
        if better:
            best_auc, best_epoch, best_state = val_auc, epoch, trainable_state(model)
        history.append({"epoch": epoch, "train_loss": round(loss, 5), "val_auc": round(val_auc, 5),
                        "samples_per_s": round(len(train) / elapsed, 1)})
        if D.is_main():
            print(f"epoch {epoch}: loss {loss:.4f}, {len(train) / elapsed:,.0f} samples/s, "
                  f"val AUC {val_auc:.4f}{' (best)' if better else ''}", flush=True)
        if epoch - best_epoch >= config.patience:
            break
    return FitResult(best_state=best_state, best_epoch=best_epoch, history=history, train_seconds=seconds)




def train(config: CTRConfig, test: bool = True) -> dict:
    """Train one model; write model.pt, ctr_config.json, features.json, metrics.json and predictions.parquet
    (val and test probabilities, for paired comparisons); return the metrics.

    test=False (a tuning trial) never scores the test split: a config is chosen on validation alone.
    """
    check_distributed(config)
    D.init()
    flush_denormals()
    set_seed(config.seed)  # every rank builds the same initial model
    data, features, catalogue, max_history = load_data(config)
    names = ("train", "val", "test") if test else ("train", "val")
    splits = {name: build_split(data, name, features, max_history,
                                config.max_train_samples if name == "train" else config.max_eval_samples)
              for name in names}
    for name, split in splits.items():
        if len(split) == 0:
            raise ConfigError(f"{data.folder}: the {name} split is empty")
    model = build_model(config, features, catalogue, data)
    result = fit(model, splits["train"], splits["val"], config)
    model.load_state_dict(result.best_state, strict=False)
    model.train()  # drops the LoRA path's evaluation cache, computed with the last epoch's adapters, not the best
    probs = {name: predict(model, splits[name], config.eval_batch_size) for name in names[1:]}
    metrics = {"model": config.model, "seed": config.seed, "best_epoch": result.best_epoch,
               "epochs_run": len(result.history), "epochs_cap": config.epochs, "history": result.history,
               **{name: scored(splits[name], probs[name], slice_masks(splits[name], catalogue)) for name in probs},
               "train_samples": len(splits["train"]), "max_history": max_history, "world_size": D.world(),
               "samples_per_s": round(len(splits["train"]) * len(result.history) / result.train_seconds, 1),
               "train_seconds": round(result.train_seconds, 2), "peak_rss_mb": peak_rss_mb(),
               "trainable_params": sum(t.numel() for t in result.best_state.values()),
               "knowledge_missing": getattr(getattr(model, "vectors", None), "missing", None)}
    if config.is_elec:  # the figures above are the vanilla network's (served); these the gain network's
        metrics["gain"] = {name: score(model.gain, splits[name], config.eval_batch_size) for name in names[1:]}
        metrics["knowledge_missing"] = model.gain.vectors.missing
        metrics["served_params"] = sum(p.numel() for p in model.vanilla.parameters())
    if D.is_main():
        for name in names[1:]:
            print(f"{name}: AUC {auc_text(metrics[name]['auc'])}, {metrics[name]['samples']:,} rows; slices:\n"
                  f"{format_slices(metrics[name]['slices'])}", flush=True)
        save_run(config, features, result.best_state, metrics, predictions_frame(splits, probs))
    D.barrier()  # no rank returns before the run folder is complete
    return metrics


def predictions_frame(splits: dict[str, Split], probs: dict[str, np.ndarray]) -> pd.DataFrame:
    """split, row (position in the split), user_id, label, prob: what paired comparisons between runs read."""
    parts = [pd.DataFrame({"split": name, "row": np.arange(len(p)), "user_id": splits[name].user_ids.astype(str),
                           "label": splits[name].label.numpy().astype(np.int8), "prob": p.astype(np.float32)})
             for name, p in probs.items()]
    return pd.concat(parts, ignore_index=True)


def check_distributed(config: CTRConfig) -> None:
    """Refuse, under a launcher, what DDP here does not handle."""
    if not D.launched():
        return
    world = int(os.environ["WORLD_SIZE"])
    if config.lora:
        raise ConfigError("--lora trains in one process only: the student's per-batch encoding and its evaluation "
                          "cache are not set up for DistributedDataParallel (run without torchrun)")
    if config.batch_size % world:
        raise ConfigError(f"batch_size {config.batch_size} is the global batch and must split evenly over "
                          f"{world} ranks")


def test_saved(run_dir: str | Path, output: str | Path) -> dict:
    """A finished run that never scored test (a tuning trial) scored on val and test into `output`, as a run folder.

    The same as training its config again with its seed (the loop is seeded and deterministic on CPU), without
    the training: `ctr tune` uses it for the chosen trial's own seed.
    """
    from dataclasses import replace

    run = load_run(run_dir)
    if run.config.is_elec or run.config.lora:
        raise ConfigError(f"{run_dir}: an ELEC or LoRA run is trained again, not reloaded")
    metrics = json.loads((Path(run_dir) / METRICS).read_text())
    splits = {name: build_split(run.data, name, run.features, run.max_history, run.config.max_eval_samples)
              for name in ("val", "test")}
    probs = {name: predict(run.model, split, run.config.eval_batch_size) for name, split in splits.items()}
    metrics |= {name: scored(splits[name], probs[name], slice_masks(splits[name], run.catalogue)) for name in probs}
    metrics["reloaded_from"] = str(run_dir)
    config = replace(run.config, output=str(output))
    save_run(config, run.features, trainable_state(run.model), metrics, predictions_frame(splits, probs))
    return metrics


def evaluate_run(model_dir: str | Path, data_dir: str | Path | None = None, split: str = "test") -> dict:
    """Score a saved run on a split of a prepared folder (default: the one it was trained on), slices included."""
    run = load_run(model_dir, data_dir)
    rows = build_split(run.data, split, run.features, run.max_history, run.config.max_eval_samples)
    return score(run.model, rows, run.config.eval_batch_size, slice_masks(rows, run.catalogue))


def train_seeds(config: CTRConfig, seeds: list[int]) -> dict:
    """Train once per seed into OUTPUT/seed-N; write and return the mean +- spread of the test figures."""
    runs = []
    for seed in seeds:
        values = {**config.to_dict(), "seed": seed, "output": str(Path(config.output) / f"seed-{seed}")}
        runs.append(train(CTRConfig(**values)))
    summary = {"model": config.model, "seeds": seeds,
               "test": {k: mean_std([r["test"][k] for r in runs]) for k in ("auc", "gauc", "logloss")},
               "samples_per_s": mean_std([r["samples_per_s"] for r in runs])}
    if D.is_main():
        write_json(Path(config.output) / "summary.json", summary)
    return summary
