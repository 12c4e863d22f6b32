"""Fixtures for the CTR tests: a tiny synthetic prepared folder and its tensors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ctr_samples import write_prepared  # noqa: E402


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    return write_prepared(tmp_path_factory.mktemp("prepared"))


@pytest.fixture(scope="session")
def knowledge_dir(tmp_path_factory, prepared) -> Path:
    """Random 8-wide item and user tables in the `distill embed` format (one item left out on purpose)."""
    import json

    import numpy as np

    from ground.vectors import ITEM_TABLE, USER_TABLE, write_table

    folder = tmp_path_factory.mktemp("knowledge")
    rng = np.random.default_rng(0)
    items = [json.loads(line)["item_id"] for line in (prepared / "items.jsonl").read_text().splitlines()][:-1]
    users = [json.loads(line)["user_id"] for line in (prepared / "users.jsonl").read_text().splitlines()]
    write_table(folder / ITEM_TABLE, items, rng.normal(size=(len(items), 8)).astype("float32"))
    write_table(folder / USER_TABLE, users, rng.normal(size=(len(users), 8)).astype("float32"))
    return folder


@pytest.fixture(scope="session")
def tensors(prepared):
    """(prepared data, features, catalogue, train split) of the synthetic folder."""
    from ctr.data import build_catalogue, build_split, load_prepared
    from ctr.features import build_features

    data = load_prepared(prepared)
    features = build_features(data.split("train"), data.card)
    catalogue = build_catalogue(data, features)
    return data, features, catalogue, build_split(data, "train", features, data.card["max_history"])
