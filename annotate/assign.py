"""Who annotates what: k annotators per item, or a share of items double-annotated.

Deterministic for a seed: each item takes the least-loaded annotators, ties
broken by a hash of (seed, item, annotator), so the plan for one item does not
depend on the order other items were planned in beyond the loads.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from ground.errors import ConfigError
from ground.flags import flag


@dataclass(frozen=True, kw_only=True)
class AssignConfig:
    """How many annotators each item gets."""

    per_item: int = field(default=1, metadata=flag("Annotators per item."))
    double_share: float = field(default=0.0, metadata=flag(
        "With --per-item 1: share of items given a second annotator."))
    seed: int = field(default=0, metadata=flag("Seed of the assignment."))

    def __post_init__(self) -> None:
        if self.per_item < 1:
            raise ConfigError(f"per_item must be at least 1, got {self.per_item}")
        if not 0.0 <= self.double_share <= 1.0:
            raise ConfigError(f"double_share must be between 0 and 1, got {self.double_share}")
        if self.double_share > 0 and self.per_item != 1:
            raise ConfigError(f"give either per_item > 1 or double_share, not both (per_item={self.per_item}, "
                             f"double_share={self.double_share})")

    def check(self, n_annotators: int) -> None:
        """Fail when the plan needs more annotators than there are."""
        need = 2 if self.double_share > 0 else self.per_item
        if n_annotators < need:
            raise ConfigError(f"{need} annotators per item need at least {need} annotator accounts, got {n_annotators}")


def _tiebreak(seed: int, key: str, annotator: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}\x00{annotator}".encode()).hexdigest()


def doubled(keys: list[str], share: float, seed: int) -> set[str]:
    """The items (a seeded random `share` of them) that get a second annotator."""
    n = round(share * len(keys))
    return set(random.Random(seed).sample(sorted(keys), n)) if n else set()


def plan_assignments(keys: list[str], annotators: list[str], config: AssignConfig,
                     existing: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Annotators for each key not in `existing`; stored pairs count towards the loads and are never moved."""
    config.check(len(annotators))
    existing = existing or {}
    load = {a: 0 for a in annotators}
    for names in existing.values():
        for name in names:
            if name in load:
                load[name] += 1
    extra = doubled(keys, config.double_share, config.seed)
    plan: dict[str, list[str]] = {}
    for key in keys:
        if key in existing:
            continue
        k = config.per_item + (1 if key in extra else 0)
        chosen = sorted(annotators, key=lambda a: (load[a], _tiebreak(config.seed, key, a)))[:k]
        for name in chosen:
            load[name] += 1
        plan[key] = sorted(chosen)
    return plan
