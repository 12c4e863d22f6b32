"""Paired comparisons of two models on the same test rows: per-seed AUC deltas, a bootstrap over test users,
a paired test over seeds, and RelaImpr only where it means something.

Each run folder's predictions.parquet holds its probabilities per test row, in the split's order; the rows of
two runs on one prepared folder are the same rows, so a delta is paired row by row. The bootstrap resamples
*users* (all of a user's rows together: rows of one user are not independent), draws the same users for both
models and for every seed, and gives a 95% percentile interval of the delta; the paired t-test over seeds asks
whether the per-seed deltas differ from 0 (seed to seed spread, the training noise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ctr.metrics import rela_impr  # noqa: F401  (RelaImpr beside the deltas: None where the base AUC <= 0.55)
from ctr.runs import CONFIG, METRICS, PREDICTIONS
from ground.errors import ConfigError

@dataclass(kw_only=True)
class Ranked:
    """One model's test scores prepared for fast weighted AUCs: tied scores grouped, groups in score order."""

    group: np.ndarray  # (N,) index of the row's score among the sorted distinct scores
    n_groups: int
    label: np.ndarray  # (N,) 0/1


def ranked(labels: np.ndarray, scores: np.ndarray) -> Ranked:
    distinct, group = np.unique(scores, return_inverse=True)
    return Ranked(group=group, n_groups=len(distinct), label=np.asarray(labels, dtype=np.int64))


def weighted_auc(r: Ranked, weights: np.ndarray) -> float:
    """AUC with a weight per row (a bootstrap's row counts): P(score of a positive > a negative), ties count 1/2."""
    pos = np.bincount(r.group, weights=weights * r.label, minlength=r.n_groups)  # (G,) per distinct score
    neg = np.bincount(r.group, weights=weights * (1 - r.label), minlength=r.n_groups)
    below = np.cumsum(neg) - neg  # negatives with a strictly lower score
    total = pos.sum() * neg.sum()
    return float((pos * (below + 0.5 * neg)).sum() / total) if total else float("nan")


def user_draws(users: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes (N,), counts (n_boot, U)): each bootstrap draws the users with replacement; row i of bootstrap b
    weighs counts[b, codes[i]], its user's number of draws."""
    distinct, codes = np.unique(users, return_inverse=True)
    rng = np.random.default_rng(seed)
    n = len(distinct)
    return codes, np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])


def paired_deltas(labels: np.ndarray, users: np.ndarray, base: list[np.ndarray], model: list[np.ndarray],
                  n_boot: int = 1000, seed: int = 0) -> dict:
    """Per-seed and mean AUC deltas (model - base) with 95% user-bootstrap intervals and a paired t-test.

    base, model: one (N,) score array per seed, paired by position (seed i of both).
    """
    from scipy import stats

    if len(base) != len(model) or not base:
        raise ValueError(f"need the same number of seeds for both models, got {len(base)} and {len(model)}")
    codes, counts = user_draws(users, n_boot, seed)  # the same draws for every seed and both models
    ones = np.ones(len(labels))
    per_seed, boot = [], np.zeros((len(base), n_boot))
    for s, (b, m) in enumerate(zip(base, model)):
        rb, rm = ranked(labels, b), ranked(labels, m)
        delta = weighted_auc(rm, ones) - weighted_auc(rb, ones)
        for i in range(n_boot):
            w = counts[i, codes].astype(np.float64)  # (N,)
            boot[s, i] = weighted_auc(rm, w) - weighted_auc(rb, w)
        low, high = np.percentile(boot[s], [2.5, 97.5])
        per_seed.append({"delta": delta, "ci95": [float(low), float(high)]})
    deltas = np.array([p["delta"] for p in per_seed])
    mean_boot = boot.mean(0)
    out = {"per_seed": per_seed, "mean_delta": float(deltas.mean()),
           "ci95_users": [float(v) for v in np.percentile(mean_boot, [2.5, 97.5])],
           "seeds_positive": int((deltas > 0).sum()), "seeds": len(deltas), "n_boot": n_boot,
           "users": int(len(np.unique(users)))}
    if len(deltas) > 1:
        t = stats.ttest_1samp(deltas, 0.0)
        out["paired_t"] = {"t": float(t.statistic), "p": float(t.pvalue), "df": len(deltas) - 1}
    return out


RARE = 20  # the delta is also given on test rows whose item has at most RARE train rows (cold items included)


def rare_rows(data: Path) -> np.ndarray:
    """(test rows,) True where the row's item has at most RARE train rows (ctr.slices' item_train_count)."""
    samples = pd.read_parquet(Path(data) / "samples.parquet", columns=["item_id", "split"])
    counts = samples.loc[samples["split"] == "train", "item_id"].value_counts()
    return samples.loc[samples["split"] == "test", "item_id"].map(counts).fillna(0).to_numpy() <= RARE


def with_rare(labels: np.ndarray, users: np.ndarray, base: list[np.ndarray], model: list[np.ndarray],
              rare: np.ndarray, n_boot: int) -> dict:
    """paired_deltas on every row and, where both labels occur there, on the rows of rare items."""
    out = paired_deltas(labels, users, base, model, n_boot=n_boot)
    if 0 < labels[rare].sum() < rare.sum():
        out[f"items_le_{RARE}"] = {"rows": int(rare.sum()), **paired_deltas(
            labels[rare], users[rare], [b[rare] for b in base], [m[rare] for m in model], n_boot=n_boot)}
    return out


def seed_runs(folder: Path) -> dict[int, Path]:
    """seed -> finished run folder: FOLDER/seed-N (`ctr train --seeds`, `ctr tune`'s best/) or FOLDER itself."""
    folder = Path(folder)
    runs = {int(p.name.split("-", 1)[1]): p for p in folder.glob("seed-*")
            if p.name.split("-", 1)[1].isdigit() and (p / METRICS).exists()}
    if not runs and (folder / METRICS).exists():
        runs = {int(json.loads((folder / CONFIG).read_text())["seed"]): folder}
    if not runs:
        raise ConfigError(f"{folder}: no finished run (metrics.json) in it or in its seed-N folders")
    return runs


def test_predictions(run: Path) -> pd.DataFrame:
    path = run / PREDICTIONS
    if not path.exists():
        raise ConfigError(f"{path}: missing (a run from before predictions were saved cannot be paired)")
    frame = pd.read_parquet(path)
    return frame[frame["split"] == "test"].reset_index(drop=True)


def compare_runs(base: Path, model: Path, n_boot: int = 1000, seeds: list[int] | None = None) -> dict:
    """`ctr compare`: MODEL's paired test-AUC deltas over BASE, seed by seed (the seeds both have), with the
    user-bootstrap interval and the paired t-test of `paired_deltas`, on every test row and on rare items."""
    base_runs, model_runs = seed_runs(base), seed_runs(model)
    common = sorted(set(base_runs) & set(model_runs))
    if seeds is not None:
        missing = sorted(set(seeds) - set(common))
        if missing:
            raise ConfigError(f"seeds {missing} are not finished in both {base} and {model} (both have {common})")
        common = sorted(seeds)
    if not common:
        raise ConfigError(f"{base} (seeds {sorted(base_runs)}) and {model} (seeds {sorted(model_runs)}) share no seed")
    data = {json.loads((runs[s] / CONFIG).read_text())["data"] for runs in (base_runs, model_runs) for s in common}
    if len({str(Path(d).resolve()) for d in data}) != 1:
        raise ConfigError(f"{base} and {model} were trained on different prepared folders: {sorted(data)}")
    frames = {(name, s): test_predictions(runs[s]) for name, runs in (("base", base_runs), ("model", model_runs))
              for s in common}
    first = frames["base", common[0]]
    for key, frame in frames.items():
        if not (np.array_equal(frame["row"], first["row"]) and np.array_equal(frame["label"], first["label"])):
            raise ConfigError(f"{key[0]} seed {key[1]}: scored on other test rows than base seed {common[0]}")
    labels, users = first["label"].to_numpy(), first["user_id"].to_numpy()
    rare = rare_rows(Path(data.pop()))[first["row"].to_numpy()]
    out = with_rare(labels, users, [frames["base", s]["prob"].to_numpy() for s in common],
                    [frames["model", s]["prob"].to_numpy() for s in common], rare, n_boot)
    return {"base": str(base), "model": str(model), "seed_list": common,
            "auc": {name: [float(json.loads((runs[s] / METRICS).read_text())["test"]["auc"]) for s in common]
                    for name, runs in (("base", base_runs), ("model", model_runs))}, **out}


def format_comparison(c: dict) -> str:
    """The comparison as a few lines of text."""
    def line(name: str, d: dict) -> str:
        p = f", paired t p {d['paired_t']['p']:.3f}" if "paired_t" in d else ""
        return (f"{name}: {d['mean_delta']:+.4f} [{d['ci95_users'][0]:+.4f}, {d['ci95_users'][1]:+.4f}] (95% over "
                f"{d['users']} test users), {d['seeds_positive']}/{d['seeds']} seeds above 0{p}")
    lines = [f"{c['model']} - {c['base']}, seeds {c['seed_list']}:",
             "  test AUC base " + " ".join(f"{v:.4f}" for v in c["auc"]["base"]) +
             " | model " + " ".join(f"{v:.4f}" for v in c["auc"]["model"]),
             "  " + line("all test rows", c)]
    rare = c.get(f"items_le_{RARE}")
    if rare:
        lines.append("  " + line(f"items with <= {RARE} train rows ({rare['rows']} rows)", rare))
    return "\n".join(lines)
