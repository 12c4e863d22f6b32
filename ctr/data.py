"""A prepared dataset folder (see `ctr prepare`) -> tensors, built once, and shuffled batches of them.

Items are addressed by a *key*: their position in items.jsonl + 1 (0 = padding).
The key reaches both the ID features (through `Catalogue.item_table`, whose
vocabularies come from the train split) and the knowledge vectors (one per
item of the catalogue, whether or not training saw it), so a cold item keeps
its semantic vector while its ID embedding is the shared UNKNOWN one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctr.distributed import shard
from ctr.features import Features, encode, lookup
from ground.errors import RecordError
from ground import records as R

SAMPLES, CARD, ITEMS, USERS = "samples.parquet", "card.json", "items.jsonl", "users.jsonl"
SPLITS = ("train", "val", "test")


@dataclass(kw_only=True)
class Prepared:
    """The files of a prepared folder, read."""

    folder: Path
    samples: pd.DataFrame
    card: dict
    item_ids: list[str]  # items.jsonl order: key k is item_ids[k - 1]
    user_ids: list[str]  # users.jsonl order, keyed the same way

    def split(self, name: str) -> pd.DataFrame:
        return self.samples[self.samples["split"] == name]


@dataclass(kw_only=True)
class Catalogue:
    """What is known per item key: its ID-feature ids and its train-split frequency."""

    item_table: torch.Tensor  # (K + 1, Fi) vocabulary ids of item_id + item fields; row 0 = padding
    item_counts: torch.Tensor  # (K + 1,) train samples whose target is the item


@dataclass(kw_only=True)
class Split:
    """One split as tensors (history kept as int32 keys to halve memory; batches cast to int64)."""

    user: torch.Tensor  # (N, Fu) vocabulary ids of user_id + user fields
    user_key: torch.Tensor  # (N,) key into users.jsonl, 0 = user not there
    item: torch.Tensor  # (N,) target item key
    history: torch.Tensor  # (N, L) item keys, oldest first, right-padded with 0
    label: torch.Tensor  # (N,) float32
    ts: torch.Tensor  # (N,) int64 event time: a user-table vector (a snapshot) feeds a row only after its time
    user_ids: np.ndarray  # (N,) raw user ids, the GAUC groups

    def __len__(self) -> int:
        return len(self.label)


@dataclass(kw_only=True)
class Batch:
    user: torch.Tensor  # (B, Fu)
    user_key: torch.Tensor  # (B,)
    item: torch.Tensor  # (B,)
    history: torch.Tensor  # (B, L)
    label: torch.Tensor  # (B,)
    ts: torch.Tensor  # (B,) int64 event time (serving: the request's time)

    @property
    def mask(self) -> torch.Tensor:
        return self.history > 0  # (B, L) True at real history items


def load_prepared(folder: str | Path) -> Prepared:
    """Read samples.parquet, card.json, items.jsonl and users.jsonl of a `ctr prepare` folder."""
    folder = Path(folder)
    for name in (SAMPLES, CARD, ITEMS):
        if not (folder / name).exists():
            raise RecordError(f"{folder / name}: no such file (is {folder} a `ctr prepare` folder?)")
    samples = pd.read_parquet(folder / SAMPLES, dtype_backend="pyarrow")  # list and string columns stay in Arrow
    bad = sorted(set(samples["split"].unique()) - set(SPLITS))
    if bad:
        raise RecordError(f"{folder / SAMPLES}: unknown split value {bad[0]!r} (expected {', '.join(SPLITS)})")
    items = [str(r[R.ITEM_ID]) for r in R.read_records(folder / ITEMS, "item")]
    users = [str(r[R.USER_ID]) for r in R.read_records(folder / USERS, "user")] if (folder / USERS).exists() else []
    return Prepared(folder=folder, samples=samples, card=json.loads((folder / CARD).read_text()),
                    item_ids=items, user_ids=users)


def item_keys(values, item_ids: list[str], where: str) -> np.ndarray:
    """(N,) keys of item ids; an id missing from items.jsonl raises RecordError."""
    keys = lookup(values, item_ids, np.arange(1, len(item_ids) + 1), 0)
    if (keys == 0).any():
        raise RecordError(f"{where}: item {np.asarray(values, dtype=object)[keys == 0][0]!r} is not in {ITEMS}")
    return keys


def build_catalogue(data: Prepared, features: Features) -> Catalogue:
    """Per item key: vocabulary ids of its item fields (from any row showing it) and its train frequency."""
    rows = data.samples.drop_duplicates(R.ITEM_ID)  # item fields are attributes of the item, not of the sample
    keys = item_keys(rows[R.ITEM_ID].to_numpy(), data.item_ids, f"{data.folder / SAMPLES}")
    table = np.zeros((len(data.item_ids) + 1, len(features.item_fields)), np.int64)
    table[1:, 0] = encode(data.item_ids, features.vocabs[R.ITEM_ID])
    table[1:, 1:] = 1  # items never seen as a target: unknown field values
    for col, field in enumerate(features.item_fields[1:], start=1):
        table[keys, col] = encode(rows[field].to_numpy(), features.vocabs[field])
    train = data.split("train")[R.ITEM_ID].to_numpy()
    counts = np.bincount(item_keys(train, data.item_ids, f"{data.folder / SAMPLES}"), minlength=len(table))
    return Catalogue(item_table=torch.from_numpy(table), item_counts=torch.from_numpy(counts).float())


def history_keys(column: pd.Series, item_ids: list[str], max_history: int, where: str) -> np.ndarray:
    """(N, L) int32 keys of each row's last max_history items, oldest first, right-padded with 0."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = pa.array(column.array) if hasattr(column.array, "__arrow_array__") else pa.array(column.tolist())
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(lists)
    keys = item_keys(flat, item_ids, where) if len(flat) else np.array([], np.int64)
    ends = np.cumsum(lengths)
    kept = np.minimum(lengths, max_history)
    out = np.zeros((len(column), max(max_history, 1)), np.int32)
    rows = np.repeat(np.arange(len(column)), kept)
    # position j of row r takes flat[ends[r] - kept[r] + j]: the last `kept` items in their order
    cols = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    out[rows, cols] = keys[np.repeat(ends - kept, kept) + cols]
    return out


def build_split(data: Prepared, name: str, features: Features, max_history: int, limit: int | None = None) -> Split:
    """Tensors of one split (the first `limit` rows when given: a slice for slow runs)."""
    df = data.split(name)
    if limit is not None:
        df = df.iloc[:limit]
    where = f"{data.folder / SAMPLES} ({name})"
    user = np.stack([encode(df[f].to_numpy(), features.vocabs[f]) for f in features.user_fields], axis=1)
    user_key = lookup(df[R.USER_ID].to_numpy(), data.user_ids, np.arange(1, len(data.user_ids) + 1), 0)
    return Split(user=torch.from_numpy(user.reshape(len(df), len(features.user_fields))),
                 user_key=torch.from_numpy(np.asarray(user_key, np.int64)),
                 item=torch.from_numpy(item_keys(df[R.ITEM_ID].to_numpy(), data.item_ids, where)),
                 history=torch.from_numpy(history_keys(df[R.HISTORY], data.item_ids, max_history, where)),
                 label=torch.from_numpy(df[R.LABEL].to_numpy().astype(np.float32)),
                 ts=torch.from_numpy(df[R.TS].to_numpy().astype(np.int64)),
                 user_ids=df[R.USER_ID].astype(str).to_numpy(dtype=object))


def batch_of(split: Split, idx: torch.Tensor) -> Batch:
    """The rows `idx` of a split as a batch."""
    return Batch(user=split.user[idx], user_key=split.user_key[idx], item=split.item[idx],
                 history=split.history[idx].long(), label=split.label[idx], ts=split.ts[idx])


def batches(split: Split, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
            part: int = 0, parts: int = 1) -> Iterator[Batch]:
    """Batches of a split, in a seeded random order when shuffle is set; with parts > 1, rank `part`'s share."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = shard(order, part, parts)
    for start in range(0, len(order), batch_size):
        yield batch_of(split, order[start : start + batch_size])
