"""`ctr tune`: a seeded random search on validation AUC, then the chosen config trained per seed and tested once.

Every model gets the same number of trials from the same kind of space (embedding width, MLP, dropout, L2,
learning rate; MSD adds its own knobs), so a comparison between tuned models is fair (Rendle et al., 2019;
Ferrari Dacrema et al., 2019). Trial 0 is the given config itself; trial i > 0 is drawn from a generator
seeded with (search_seed, i), so a trial is the same whenever it runs. Each trial trains to early stopping
on validation and never scores the test split. OUTPUT/trials.jsonl records every trial as it finishes; a
rerun skips the recorded ones (resume). The trial with the best validation AUC is then trained once per
seed into OUTPUT/best/seed-N (test scored there, once per seed; for the trials' own seed the chosen trial's
saved run is scored, which is what training it again would give), and OUTPUT/tune.json sums it up.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctr.metrics import mean_std
from ctr.train_config import CTRConfig
from ground.errors import ConfigError, RecordError
from ground.files import write_json
from ground.flags import flag

# Values drawn uniformly per trial. Settings the user fixes (a flag or a YAML key) are left out of the search.
SPACE: dict[str, list] = {
    "embed_dim": [8, 16, 32],
    "hidden": [[200, 80], [256, 128], [128, 64], [400, 200, 100]],
    "dropout": [0.0, 0.1, 0.2, 0.3],
    "weight_decay": [0.0, 1e-7, 1e-6, 1e-5],
    "learning_rate": [3e-4, 1e-3, 2e-3, 5e-3],
}
# MSD's own design choices, chosen on validation like the rest (issue 21.6): raw vs z-scored vectors, k, mask rate.
MSD_SPACE: dict[str, list] = {"adaptor_hidden": [32, 64, 128], "top_k": [1, 3, 5], "mask_rate": [0.0, 0.15, 0.3],
                              "standardize_vectors": [True, False]}
TRIALS, BEST, SUMMARY = "trials.jsonl", "best", "tune.json"


@dataclass(kw_only=True)
class TuneConfig:
    """The search around a CTRConfig: how many trials, drawn how, and the seeds of the chosen config."""

    trials: int = field(default=8, metadata=flag("Trials of the random search (give every model the same number)."))
    search_seed: int = field(default=0, metadata=flag("Seed of the draws (trial i uses (search_seed, i))."))
    seeds: list[int] = field(default_factory=lambda: [0], metadata=flag("Seeds of the chosen config's final runs."))

    def __post_init__(self) -> None:
        self.seeds = list(self.seeds)
        if self.trials < 1 or not self.seeds:
            raise ConfigError(f"trials must be >= 1 and seeds not empty, got {self.trials} / {self.seeds}")


def space(config: CTRConfig, fixed: set[str]) -> dict[str, list]:
    """The knobs searched for this model: the shared ones, MSD's own for MSD/ELEC, less the fixed settings."""
    knobs = {**SPACE, **(MSD_SPACE if config.is_msd or config.is_elec else {})}
    return {name: values for name, values in knobs.items() if name not in fixed}


def draw(knobs: dict[str, list], search_seed: int, trial: int) -> dict:
    """Trial `trial`'s settings: {} for trial 0 (the config as given), else one value per knob."""
    if trial == 0:
        return {}
    rng = np.random.default_rng([search_seed, trial])
    return {name: values[int(rng.integers(len(values)))] for name, values in knobs.items()}


def read_trials(path: Path) -> dict[int, dict]:
    """trial -> its record, from trials.jsonl (a cut last line, from a killed run, is dropped)."""
    out: dict[int, dict] = {}
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError:
            if n == len(path.read_text().splitlines()):
                break
            raise RecordError(f"{path}:{n}: not a JSON line") from None
        out[int(record["trial"])] = record
    return out


def trial_config(base: CTRConfig, params: dict, output: Path) -> CTRConfig:
    return CTRConfig(**{**base.to_dict(), **params, "output": str(output)})


def run_trials(base: CTRConfig, tune: TuneConfig, fixed: set[str], train_fn) -> list[dict]:
    """Train the trials not yet in trials.jsonl (one line each as it ends); return every trial's record."""
    out = Path(base.output)
    out.mkdir(parents=True, exist_ok=True)
    knobs = space(base, fixed)
    done = read_trials(out / TRIALS)
    for trial in range(tune.trials):
        params = draw(knobs, tune.search_seed, trial)
        if trial in done:
            if done[trial]["params"] != json.loads(json.dumps(params)):
                raise ConfigError(f"{out / TRIALS}: trial {trial} was drawn with other settings (another search "
                                  "seed, space or fixed flags); use a new --output")
            continue
        start = time.time()
        metrics = train_fn(trial_config(base, params, out / f"trial-{trial:02d}"), test=False)
        record = {"trial": trial, "params": params, "val_auc": metrics["val"]["auc"],
                  "val_logloss": metrics["val"]["logloss"], "best_epoch": metrics["best_epoch"],
                  "epochs_run": metrics["epochs_run"], "epochs_cap": base.epochs,
                  "train_seconds": metrics["train_seconds"], "wall_seconds": round(time.time() - start, 1),
                  "load_avg_1m": round(os.getloadavg()[0], 2)}
        with (out / TRIALS).open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        done[trial] = record
    return [done[t] for t in range(tune.trials)]


def chosen(trials: list[dict]) -> dict:
    """The trial with the best validation AUC (the earliest among equals)."""
    return max(trials, key=lambda r: (r["val_auc"] if r["val_auc"] is not None else -1.0, -r["trial"]))


def tune(base: CTRConfig, tune: TuneConfig, fixed: set[str], train_fn=None, reuse: bool = True) -> dict:
    """Search, choose on validation, train the choice per seed (test once each); write and return tune.json.

    The chosen trial ran with the trials' seed: for that seed its saved run is scored on test rather than trained
    again (reuse=False trains it again)."""
    if train_fn is None:
        from ctr.train import train as train_fn
    trials = run_trials(base, tune, fixed, train_fn)
    best = chosen(trials)
    runs = []
    for seed in tune.seeds:
        folder = Path(base.output) / BEST / f"seed-{seed}"
        if (folder / "metrics.json").exists():  # resume
            runs.append(json.loads((folder / "metrics.json").read_text()))
            continue
        trial = Path(base.output) / f"trial-{best['trial']:02d}"
        if seed == base.seed and reuse and (trial / "model.pt").exists() and not (base.is_elec or base.lora):
            from ctr.train import test_saved  # the trial is this very run: score its test split, once

            runs.append(test_saved(trial, folder))
            continue
        config = trial_config(base, {**best["params"], "seed": seed}, folder)
        runs.append(train_fn(config, test=True))
    summary = {"model": base.model, "trials": len(trials), "search_seed": tune.search_seed,
               "space": space(base, fixed), "fixed": sorted(fixed), "chosen_trial": best["trial"],
               "chosen": {**trial_config(base, best["params"], Path(base.output) / BEST).to_dict()},
               "val_auc_of_chosen_trial": best["val_auc"], "seeds": tune.seeds,
               "best_epochs": [r["best_epoch"] for r in runs], "epochs_cap": base.epochs,
               "test": {k: mean_std([r["test"][k] for r in runs]) for k in ("auc", "gauc", "logloss")},
               "val": {k: mean_std([r["val"][k] for r in runs]) for k in ("auc",)},
               "search_wall_seconds": round(sum(t["wall_seconds"] for t in trials), 1)}
    write_json(Path(base.output) / SUMMARY, summary)
    return summary
