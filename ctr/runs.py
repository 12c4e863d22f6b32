"""A `ctr train` output folder: what is written into it and how a run is loaded back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ctr.build import build_model, build_vanilla
from ctr.data import Catalogue, Prepared, build_catalogue, load_prepared
from ctr.elec import split_state
from ctr.features import Features, build_features
from ctr.train_config import CTRConfig, from_saved
from ground.errors import ConfigError, RecordError
from ground.files import write_json

WEIGHTS, CONFIG, FEATURES, METRICS = "model.pt", "ctr_config.json", "features.json", "metrics.json"
PREDICTIONS = "predictions.parquet"  # val and test probabilities per row (paired comparisons between runs)
GAIN_WEIGHTS = "gain.pt"  # ELEC: the gain network (and projection); model.pt holds the served vanilla network


def save_weights(state: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # a reader never sees half a file
    torch.save(state, tmp)
    tmp.replace(path)


def save_run(config: CTRConfig, features: Features, state: dict, metrics: dict, predictions=None) -> None:
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    if config.is_elec:
        state, gain = split_state(state)
        save_weights(gain, out / GAIN_WEIGHTS)
    save_weights(state, out / WEIGHTS)
    features.save(out / FEATURES)
    write_json(out / CONFIG, config.to_dict())
    if predictions is not None:
        tmp = out / f".{PREDICTIONS}.tmp"
        predictions.to_parquet(tmp, index=False)
        tmp.replace(out / PREDICTIONS)
    write_json(out / METRICS, metrics)  # last: a folder with metrics.json is a finished run


def load_data(config: CTRConfig, features: Features | None = None):
    """(prepared data, features, catalogue, max_history): features are built on the train split unless given."""
    data = load_prepared(config.data)
    features = features or build_features(data.split("train"), data.card)
    max_history = config.max_history or int(data.card["max_history"])
    return data, features, build_catalogue(data, features), max_history


@dataclass(kw_only=True)
class LoadedRun:
    model: nn.Module  # with its saved weights; an ELEC run's vanilla network alone
    config: CTRConfig
    features: Features
    data: Prepared
    catalogue: Catalogue
    max_history: int


def read_config(model_dir: str | Path, data_dir: str | Path | None = None) -> CTRConfig:
    """The config a run folder was trained with; `data_dir` replaces its prepared folder."""
    model_dir = Path(model_dir)
    for name in (WEIGHTS, CONFIG):
        if not (model_dir / name).exists():
            raise RecordError(f"{model_dir / name}: no such file (not a `ctr train` output folder)")
    values = json.loads((model_dir / CONFIG).read_text())
    return from_saved({**values, "data": str(data_dir or values["data"])})


def flush_denormals() -> None:
    """Treat floats below ~1.2e-38 as zero on CPU (FTZ/DAZ).

    219 such weights (0.15% of a tuned DIN's MLP, after some epochs with L2) made its matrix products 3.9x
    slower on this project's CPUs, and ML-1M epochs fell from ~12,000 to ~360 samples/s mid-run
    (`python -m bench.ctr_denormals`, bench/results/ctr.jsonl). Values that small change no prediction.
    """
    torch.set_flush_denormal(True)


def load_run(model_dir: str | Path, data_dir: str | Path | None = None) -> LoadedRun:
    """A saved run and the prepared folder it scores (default: the one it was trained on)."""
    flush_denormals()
    model_dir = Path(model_dir)
    config = read_config(model_dir, data_dir)
    data, features, catalogue, max_history = load_data(config, Features.load(model_dir / FEATURES))
    model = (build_vanilla(config, features, catalogue) if config.is_elec
             else build_model(config, features, catalogue, data))
    result = model.load_state_dict(torch.load(model_dir / WEIGHTS), strict=False)
    # the vanilla network has no frozen part, so every one of its weights must be in model.pt
    if result.unexpected_keys or (config.is_elec and result.missing_keys):
        keys = result.unexpected_keys or result.missing_keys
        raise RecordError(f"{model_dir / WEIGHTS}: weights {keys[:3]} do not fit the model of {CONFIG}")
    return LoadedRun(model=model, config=config, features=features, data=data, catalogue=catalogue,
                     max_history=max_history)


def load_vanilla(run_dir: str | Path, data_dir: str | Path | None = None) -> tuple[nn.Module, Features]:
    """(the served vanilla network in eval mode, its features) of a `ctr train --model elec` run folder.

    The prepared folder (default: the one the run was trained on) gives the item-field table;
    no knowledge table or student is read.
    """
    run = load_run(run_dir, data_dir)
    if not run.config.is_elec:
        raise ConfigError(f"{run_dir}: model {run.config.model!r} is not an ELEC run (train with --model elec)")
    return run.model.eval(), run.features

