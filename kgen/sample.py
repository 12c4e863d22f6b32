"""Which items/users go to the teacher: stratified allocation, then importance sampling without replacement.

The paper picks teacher inputs by stratified sampling (by category) and importance
sampling (by posterior statistics such as exposures and clicks). Here:

1. `allocate` splits n across strata (proportional to size, equal, or proportional
   to sqrt(size)), never giving a stratum more rows than it has, by largest-remainder
   rounding after capping full strata and handing their share to the others.
2. Within a stratum, m rows are drawn without replacement with probability
   proportional to their weight, by Efraimidis-Spirakis keys u**(1/w) (top m keys).
3. Each picked row carries the weight used and its first-order inclusion probability.
   Exact inclusion probabilities of successive weighted sampling have no closed form;
   we report the standard pi-ps target min(1, m*w/sum w), recomputed with the rows
   that reach 1 fixed at 1 until none exceeds it. It sums to m within a stratum and
   is close to the true value when m*w/sum w is small; it is an approximation for
   very heavy rows (the true probability of a moderately heavy row is a bit lower).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as config_field
from typing import Literal, get_args

import numpy as np

from ground.records import CLICKS, EXPOSURES, HISTORY, INCLUSION_PROB, SAMPLING_WEIGHT, STATS, STRATUM, record_id
from ground.errors import ConfigError, RecordError
from ground.flags import flag

ALL = "all"
MISSING = "(missing)"
Allocation = Literal["proportional", "equal", "sqrt"]
ALLOCATIONS: tuple[str, ...] = get_args(Allocation)
CTR = "ctr"
HISTORY_LEN = "history_len"
WEIGHTS: tuple[str, ...] = (EXPOSURES, CLICKS, CTR, HISTORY_LEN)


@dataclass(kw_only=True)
class SampleConfig:
    """How many rows to pick, how to stratify, how to weight, and the seed."""

    n: int = config_field(default=100, metadata=flag("How many rows to pick."))
    by: str | None = config_field(default=None, metadata=flag(
        "Stratify by this field (e.g. category); none = one stratum."))
    allocation: Allocation = config_field(default="proportional", metadata=flag(
        "Rows per stratum: proportional to its size, equal, or proportional to sqrt(size)."))
    weight: str | None = config_field(default=None, metadata=flag(
        f"Importance weight: {', '.join(WEIGHTS)}; none = uniform."))
    seed: int = config_field(default=0, metadata=flag("Seed of the draw."))

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"n must be a positive integer, got {self.n!r}")
        if self.by is not None and (not isinstance(self.by, str) or not self.by.strip()):
            raise ConfigError(f"by must be a field name or None, got {self.by!r}")
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(f"allocation must be one of {ALLOCATIONS}, got {self.allocation!r}")
        if self.weight is not None and self.weight not in WEIGHTS:
            raise ConfigError(f"weight must be one of {WEIGHTS} or None, got {self.weight!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")


def stats_problem(row: dict, field: str) -> str | None:
    """What keeps `stats.<field>` of a row from being a weight, or None."""
    stats = row.get(STATS) or {}
    value = stats.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"stats.{field} must be a number to weight by it, got {value!r}"
    if value < 0:
        return f"stats.{field} is negative ({value}); counts cannot be"
    return None


def _count(row: dict, field: str) -> float:
    problem = stats_problem(row, field)
    if problem:
        raise RecordError(f"row {record_id(row)}: {problem}")
    return float(row[STATS][field])


def _stats_fields(weight: str | None) -> tuple[str, ...]:
    return {CTR: (CLICKS, EXPOSURES), EXPOSURES: (EXPOSURES,), CLICKS: (CLICKS,)}.get(weight or "", ())


def check_rows(numbered: list[tuple[int, dict]], config: SampleConfig, path: str) -> None:
    """Refuse input that the config cannot sample as asked: `path:line` for a row without the weight's stats,
    `path` when no row has the field to stratify by (all rows would fall into one '(missing)' stratum)."""
    for lineno, row in numbered:
        for field in _stats_fields(config.weight):
            problem = stats_problem(row, field)
            if problem:
                raise RecordError(f"{path}:{lineno}: {problem} (--weight {config.weight})")
    if config.by and numbered and all(stratum_of(row, config.by) == MISSING for _, row in numbered):
        raise RecordError(f"{path}: no row has a value for field {config.by!r} to stratify by (--by)")


def row_weight(row: dict, weight: str | None) -> float:
    """The importance weight of a row; always > 0 so that every row can be picked."""
    if weight is None:
        return 1.0
    if weight == CTR:
        # Laplace smoothing: an item with no exposures gets 1/2, not 0/0.
        return (_count(row, CLICKS) + 1.0) / (_count(row, EXPOSURES) + 2.0)
    if weight == HISTORY_LEN:
        count = float(len(row.get(HISTORY) or []))
    else:
        count = _count(row, weight)
    # Add-one: a zero count would make a row unreachable (key u**(1/0)); +1 keeps it rare but possible.
    return count + 1.0


def stratum_of(row: dict, by: str | None) -> str:
    """The stratum of a row: the value of field `by` (a dotted path such as profile.country reaches inside)."""
    if by is None:
        return ALL
    value: object = row
    for part in by.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    # A row without the field is not dropped: it forms its own visible stratum.
    return MISSING if value is None or value == "" else str(value)


def _targets(sizes: dict[str, int], allocation: str) -> dict[str, float]:
    if allocation == "proportional":
        return {s: float(k) for s, k in sizes.items()}
    if allocation == "equal":
        return {s: 1.0 for s in sizes}
    return {s: math.sqrt(k) for s, k in sizes.items()}


def allocate(sizes: dict[str, int], n: int, allocation: Allocation) -> dict[str, int]:
    """How many rows each stratum gets: sums to min(n, total), never above a stratum's size."""
    if n >= sum(sizes.values()):
        return dict(sizes)
    targets = _targets(sizes, allocation)
    fixed: dict[str, int] = {}
    while True:  # cap full strata at their size and share what they cannot take among the rest
        open_ = [s for s in sizes if s not in fixed]
        left = n - sum(fixed.values())
        total = sum(targets[s] for s in open_)
        shares = {s: left * targets[s] / total for s in open_}
        full = [s for s in open_ if shares[s] >= sizes[s]]
        if not full:
            break
        fixed.update({s: sizes[s] for s in full})
    counts = {**fixed, **{s: math.floor(shares[s]) for s in open_}}
    # Largest remainder; ties go to the larger stratum, then by name, so the result is deterministic.
    order = sorted(open_, key=lambda s: (-(shares[s] - counts[s]), -sizes[s], s))
    for s in order[: n - sum(counts.values())]:
        counts[s] += 1
    return counts


def inclusion_probs(weights: np.ndarray, m: int) -> np.ndarray:
    """Approximate first-order inclusion probabilities of m weighted draws without replacement (pi-ps, capped at 1)."""
    weights = np.asarray(weights, dtype=float)
    pi = np.zeros_like(weights)
    if m <= 0:
        return pi
    if m >= len(weights):
        return np.ones_like(weights)
    capped = np.zeros(len(weights), dtype=bool)
    while True:
        left = m - capped.sum()
        free = ~capped
        pi[free] = left * weights[free] / weights[free].sum()
        over = free & (pi >= 1.0)
        if not over.any():
            break
        capped |= over
    pi[capped] = 1.0
    return pi


def weighted_pick(weights: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of m draws without replacement, probability proportional to weight (Efraimidis-Spirakis)."""
    # Top m of u**(1/w), compared as log(u)/w to stay exact for tiny weights.
    keys = np.log(rng.random(len(weights))) / np.asarray(weights, dtype=float)
    return np.argsort(-keys, kind="stable")[:m]


def sample_rows(rows: list[dict], config: SampleConfig) -> list[dict]:
    """Pick config.n rows (all of them if fewer), each a copy with its weight, inclusion probability and stratum."""
    weights = np.array([row_weight(r, config.weight) for r in rows], dtype=float)
    strata: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        strata.setdefault(stratum_of(row, config.by), []).append(i)
    counts = allocate({s: len(ix) for s, ix in strata.items()}, config.n, config.allocation)
    rng = np.random.default_rng(config.seed)
    picked: dict[int, dict] = {}
    for s in sorted(strata):  # a fixed stratum order makes the draws depend on the seed only
        ix = np.array(strata[s])
        w = weights[ix]
        pi = inclusion_probs(w, counts[s])
        for j in weighted_pick(w, counts[s], rng):
            picked[int(ix[j])] = {**rows[ix[j]], SAMPLING_WEIGHT: float(w[j]), INCLUSION_PROB: float(pi[j]), STRATUM: s}
    return [picked[i] for i in sorted(picked)]
