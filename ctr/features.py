"""Vocabularies of the categorical features, built on the train split only (0 = padding, 1 = unknown).

A value first seen in validation or test maps to UNKNOWN, as it would for a
model trained yesterday and served today.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ground.errors import RecordError
from ground.files import write_json
from ground import records as R

PAD, UNKNOWN = 0, 1
USER_ID, ITEM_ID = R.USER_ID, R.ITEM_ID


def build_vocab(values) -> dict[str, int]:
    """value -> id, sorted values numbered from 2 (0 = padding, 1 = unknown); "" is a value like any other."""
    return {v: i for i, v in enumerate(sorted({str(v) for v in values}), start=2)}


def encode(values, vocab: dict[str, int]) -> np.ndarray:
    """(N,) int64 ids of values (any sequence, read as strings); unseen values -> UNKNOWN."""
    return lookup(values, list(vocab), np.fromiter(vocab.values(), np.int64, count=len(vocab)), UNKNOWN)


def lookup(values, keys: list[str], ids: np.ndarray, missing: int) -> np.ndarray:
    """(N,) ids[position of each value in keys], `missing` where absent (Arrow's hash join: fast on millions)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(np.asarray(values, dtype=object))
    if not keys:  # e.g. a --snapshot-clicks users.jsonl before any user has K clicks
        return np.full(len(array), missing, np.int64)
    found = pc.index_in(array.cast(pa.string()), value_set=pa.array(keys, pa.string()))
    positions = found.fill_null(-1).to_numpy(zero_copy_only=False)
    return np.where(positions >= 0, ids[np.maximum(positions, 0)], missing).astype(np.int64)


@dataclass(kw_only=True)
class Features:
    """The fields a model embeds and their train-split vocabularies; saved as features.json beside a model."""

    user_fields: list[str]  # user_id first, then the card's user fields
    item_fields: list[str]  # item_id first, then the card's item fields
    vocabs: dict[str, dict[str, int]]

    def __post_init__(self) -> None:
        if self.user_fields[:1] != [USER_ID] or self.item_fields[:1] != [ITEM_ID]:
            raise ValueError(f"fields must start with {USER_ID} / {ITEM_ID}, got {self.user_fields} / {self.item_fields}")
        missing = [f for f in self.user_fields + self.item_fields if f not in self.vocabs]
        if missing:
            raise ValueError(f"no vocabulary for field(s) {missing}")

    def sizes(self, fields: list[str]) -> list[int]:
        """Embedding table sizes (vocabulary + padding + unknown) of the given fields."""
        return [len(self.vocabs[f]) + 2 for f in fields]

    def save(self, path: str | Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> Features:
        import json

        return cls(**json.loads(Path(path).read_text()))


def build_features(train, card: dict) -> Features:
    """Vocabularies of user_id, item_id and every card field, from the train rows only."""
    user_fields = [USER_ID, *card["fields"]["user"]]
    item_fields = [ITEM_ID, *card["fields"]["item"]]
    missing = [f for f in user_fields + item_fields if f not in train.columns]
    if missing:
        raise RecordError(f"samples.parquet: no column for field(s) {missing} named in card.json")
    vocabs = {f: build_vocab(train[f]) for f in user_fields + item_fields}
    return Features(user_fields=user_fields, item_fields=item_fields, vocabs=vocabs)
