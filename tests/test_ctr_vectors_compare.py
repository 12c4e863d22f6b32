"""bench/ctr_vectors.py compare: how alike two item tables are, item by item."""

import numpy as np
import pytest

from bench.ctr_vectors import compare
from ground.vectors import ITEM_TABLE, write_table


def table(folder, ids, vectors):
    folder.mkdir()
    write_table(folder / ITEM_TABLE, ids, np.asarray(vectors, np.float32))
    return folder


def test_a_table_is_its_own_twin_and_a_shuffle_is_not(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"i{n}" for n in range(40)]
    base = rng.normal(size=(40, 16))
    a = table(tmp_path / "a", ids, base)
    near = compare(a, table(tmp_path / "b", ids[::-1], base[::-1] * 3 + rng.normal(scale=0.01, size=(40, 16))), 5, 0)
    assert near["items"] == 40 and near["cosine_own_mean"] > 0.99 and near["nearest_is_own"] == 1.0
    assert near["top5_neighbour_overlap"] == 1.0  # row order and scale do not matter: ids are matched
    far = compare(a, table(tmp_path / "c", ids, base[rng.permutation(40)]), 5, 0)
    assert far["nearest_is_own"] < 0.2 and abs(far["cosine_own_mean"]) < 0.3


def test_too_few_shared_items_is_one_line(tmp_path):
    a = table(tmp_path / "a", ["x", "y"], np.eye(2))
    with pytest.raises(SystemExit, match="share 2 items"):
        compare(a, table(tmp_path / "b", ["x", "y"], np.eye(2)), 5, 0)
