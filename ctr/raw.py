"""What `ctr prepare` reads: its config, a loaded dataset (RawData) and the checks every loader shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ground.errors import ConfigError, RecordError

Log = Callable[[str], None]
DATASETS = ("ml-1m", "ml-100k", "online-retail", "sample")


@dataclass(kw_only=True)
class PrepareConfig:
    """Everything `ctr prepare` needs; options of another dataset are ignored (and not recorded)."""

    dataset: str
    raw: Path
    output: Path
    max_history: int = 50
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    # MovieLens
    ratings: str | None = None  # file name or glob inside raw; default ratings.dat*, then ratings*.dat*
    max_user: int | None = None  # keep users with id <= max_user (ml-1m-partial: 2998)
    click_threshold: int = 4  # rating >= this is a click
    # Online Retail
    negatives: int = 1  # sampled negatives per purchased line
    min_item_baskets: int = 10  # items bought in fewer baskets are dropped
    max_users: int | None = 1500  # customers drawn uniformly (seeded); None = all

    def __post_init__(self) -> None:
        self.raw, self.output = Path(self.raw), Path(self.output)
        self.split_fractions = tuple(float(f) for f in self.split_fractions)  # type: ignore[assignment]
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if self.max_history < 1:
            raise ConfigError(f"max_history must be >= 1, got {self.max_history}")
        fr = self.split_fractions
        if len(fr) != 3 or min(fr) < 0 or fr[0] <= 0 or abs(sum(fr) - 1) > 1e-9:
            raise ConfigError(f"split_fractions must be 3 non-negative numbers summing to 1 (train > 0), got {fr}")
        for name in ("negatives", "min_item_baskets", "click_threshold"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_user", "max_users"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 or unset, got {getattr(self, name)}")

    def relevant(self) -> dict:
        """The settings this dataset uses, JSON-ready (for card.json)."""
        used = {"ml-1m": {"ratings", "max_user", "click_threshold"}, "ml-100k": {"max_user", "click_threshold"},
                "online-retail": {"negatives", "min_item_baskets", "max_users"}, "sample": set()}[self.dataset]
        common = {"dataset", "raw", "output", "max_history", "split_fractions", "seed"}
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items() if k in common | used}


@dataclass(kw_only=True)
class RawData:
    """A dataset read and validated, before splitting: what each loader returns."""

    items: pd.DataFrame  # index item_id (str): name, category, attributes (dict), [original_name], item fields
    users: pd.DataFrame  # index user_id (str): profile (dict), user fields
    events: pd.DataFrame  # user_id, item_id (str), label (int8), ts (int64); row order breaks ts ties
    fields: dict[str, list[str]]  # {"user": [...], "item": [...]}: single-valued string columns
    protocol: dict[str, object]  # click, sample and negative rules of this dataset
    sources: list[Path]
    title: str  # how results on it are named, e.g. "ML-1M (users 1-2998)"
    notes: dict[str, object] = field(default_factory=dict)  # loader counts (dropped rows, ...)


def stop_at_first(bad: np.ndarray, lines: Sequence[int], path: Path, problem: Callable[[int], str]) -> None:
    """Raise RecordError `path:line: problem(i)` for the first True of `bad` (row i is on line lines[i])."""
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise RecordError(f"{path}:{lines[i]}: {problem(i)}")


def check_unique(ids: Sequence, lines: Sequence[int], path: Path, what: str) -> None:
    """Stop at the first id seen before."""
    stop_at_first(pd.Series(ids).duplicated().to_numpy(), lines, path, lambda i: f"{what} {ids[i]} appears twice")


def check_known(ids: Sequence, known: pd.Index, lines: Sequence[int], path: Path, what: str, where: str) -> None:
    """Stop at the first id that is not in `known`."""
    stop_at_first(~pd.Index(ids).isin(known), lines, path, lambda i: f"{what} {ids[i]} is not in {where}")

