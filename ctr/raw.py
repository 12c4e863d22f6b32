"""What `ctr prepare` reads: its config, a loaded dataset (RawData) and the checks every loader shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ground.errors import ConfigError, RecordError
from ground.flags import flag

Log = Callable[[str], None]
DATASETS = ("ml-1m", "ml-100k", "online-retail", "sample")
PROTOCOLS = ("ours", "rechorus")
HISTORY_OF = ("clicks", "ratings")


@dataclass(kw_only=True)
class PrepareConfig:
    """Everything `ctr prepare` needs; options of another dataset are ignored (and not recorded)."""

    dataset: str = field(metadata=flag(f"One of: {', '.join(DATASETS)}."))
    raw: Path = field(metadata=flag("Dataset folder (MovieLens: the folder; online-retail: the parquet file or its "
                                    "folder; sample: data/sample)."))
    output: Path = field(metadata=flag("Output folder (new, empty or an earlier output).", "--output", "-o"))
    max_history: int = field(default=50, metadata=flag("Behaviour history length kept (the last N clicks)."))
    split_fractions: tuple[float, float, float] = field(default=(0.8, 0.1, 0.1), metadata=flag(
        "Train/val/test fractions of the samples in time order.", "--split", "--split-fractions"))
    split_ts: tuple[int, int] | None = field(default=None, metadata=flag(
        "Split at these timestamps instead (train last ts, val last ts)."))
    user_snapshot: float = field(default=0.5, metadata=flag(
        "users.jsonl is a snapshot at T0 = first ts + this x the train span (clicks with ts <= T0); a vector "
        "built from it feeds rows after T0 only (unused with --snapshot-clicks)."))
    late_snapshot: bool = field(default=False, metadata=flag(
        "A user with no click up to T0 gets their users.jsonl snapshot at the end of the validation split instead "
        "(their clicks up to the last val ts; empty if none): a vector built from it feeds that user's test rows "
        "only."))
    snapshot_clicks: int | None = field(default=None, metadata=flag(
        "Each user's users.jsonl snapshot at their own K-th click instead (time order over all splits): their clicks "
        "up to its ts; a vector built from it feeds that user's rows after it only, on train, val and test. Users "
        "with fewer than K clicks get no record (no vector). Not with --late-snapshot."))
    seed: int = field(default=0, metadata=flag("Seed of every random draw (retail users and negatives)."))
    # MovieLens
    ratings: str | None = field(default=None, metadata=flag(
        "ml-1m: ratings file name or glob in --raw (default ratings.dat*, else the one ratings*.dat*)."))
    max_user: int = field(default=0, metadata=flag(
        "MovieLens: keep users with id <= N, 0 = every user (ml-1m-partial: 2998, user 2999 may be cut)."))
    click_threshold: int = field(default=4, metadata=flag("MovieLens: a rating >= this is a click."))
    protocol: str = field(default="ours", metadata=flag(
        f"MovieLens: one of {', '.join(PROTOCOLS)}. rechorus: ReChorus 2.0's CTR protocol (5-core on clicks, "
        "day-span split, val/test users and items seen in train, hour/weekday/period context; implies "
        "--history-of ratings and --full-genres)."))
    history_of: str = field(default="clicks", metadata=flag(
        f"MovieLens: what a history holds, one of {', '.join(HISTORY_OF)} (ratings: every earlier rated item)."))
    full_genres: bool = field(default=False, metadata=flag(
        "MovieLens: the genre field is the full genre string (Action|Comedy), not the first genre."))
    # Online Retail
    negatives: int = field(default=1, metadata=flag("online-retail: sampled negatives per purchase line."))
    min_item_baskets: int = field(default=10, metadata=flag("online-retail: drop items bought in fewer baskets."))
    max_users: int = field(default=1500, metadata=flag("online-retail: customers drawn at random (seeded), "
                                                       "0 = every customer."))

    def __post_init__(self) -> None:
        self.raw, self.output = Path(self.raw), Path(self.output)
        self.split_fractions = tuple(float(f) for f in self.split_fractions)  # type: ignore[assignment]
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        for name, allowed in (("protocol", PROTOCOLS), ("history_of", HISTORY_OF)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.protocol == "rechorus":
            if not self.dataset.startswith("ml-"):
                raise ConfigError(f"protocol rechorus is MovieLens' (ml-1m, ml-100k), not {self.dataset}'s")
            self.history_of, self.full_genres = "ratings", True  # part of that protocol
        if self.max_history < 1:
            raise ConfigError(f"max_history must be >= 1, got {self.max_history}")
        fr = self.split_fractions
        if len(fr) != 3 or min(fr) < 0 or fr[0] <= 0 or abs(sum(fr) - 1) > 1e-9:
            raise ConfigError(f"split_fractions must be 3 non-negative numbers summing to 1 (train > 0), got {fr}")
        if self.split_ts is not None:
            self.split_ts = tuple(int(t) for t in self.split_ts)  # type: ignore[assignment]
            if len(self.split_ts) != 2 or self.split_ts[0] > self.split_ts[1]:
                raise ConfigError(f"split_ts must be 2 timestamps, train last <= val last, got {self.split_ts}")
        if self.snapshot_clicks is not None and self.snapshot_clicks < 1:
            raise ConfigError(f"snapshot_clicks must be >= 1 (or none), got {self.snapshot_clicks}")
        if self.snapshot_clicks is not None and self.late_snapshot:
            raise ConfigError("--snapshot-clicks and --late-snapshot are two snapshot rules; choose one")
        if not 0 <= self.user_snapshot <= 1:
            raise ConfigError(f"user_snapshot must be in [0, 1], got {self.user_snapshot}")
        for name in ("negatives", "min_item_baskets", "click_threshold"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_user", "max_users"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 = all), got {getattr(self, name)}")

    def relevant(self) -> dict:
        """The settings this dataset uses, JSON-ready (for card.json)."""
        movielens = {"max_user", "click_threshold", "protocol", "history_of", "full_genres"}
        used = {"ml-1m": {"ratings"} | movielens, "ml-100k": movielens,
                "online-retail": {"negatives", "min_item_baskets", "max_users"}, "sample": set()}[self.dataset]
        common = {"dataset", "raw", "output", "max_history", "split_fractions", "split_ts", "user_snapshot",
                  "late_snapshot", "snapshot_clicks", "seed"}
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

