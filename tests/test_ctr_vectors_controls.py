"""bench/ctr_vectors.py controls: shuffle-users (a user table's negative control) and coclick (a positive control)."""

import json

import numpy as np
import pytest

from bench import ctr_vectors as B
from bench.ctr_vectors import permute_within, shuffle_users
from ctr.user_table import table_user_times
from ground.vectors import ITEM_TABLE, USER_TABLE, read_table, write_table


def tables(folder, t0):
    folder.mkdir()
    write_table(folder / ITEM_TABLE, ["a", "b"], np.eye(2, dtype=np.float32))
    users = np.arange(40, dtype=np.float32).reshape(20, 2)
    write_table(folder / USER_TABLE, [f"u{n}" for n in range(20)], users)
    (folder / "embed_config.json").write_text(json.dumps({"users_snapshot_ts": t0} if t0 else {}))
    return folder, users


def test_user_vectors_are_permuted_items_and_t0_kept(tmp_path):
    source, users = tables(tmp_path / "in", 1234)  # a table of before per-user times: one T0 in embed_config
    assert shuffle_users(source, tmp_path / "out", seed=0) == 20
    ids, shuffled = read_table(tmp_path / "out" / USER_TABLE)
    assert list(ids) == [f"u{n}" for n in range(20)]
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, users)) and not np.array_equal(shuffled, users)
    item_ids, items = read_table(tmp_path / "out" / ITEM_TABLE)
    assert list(item_ids) == ["a", "b"] and np.array_equal(items, np.eye(2))
    assert table_user_times(tmp_path / "out") == dict.fromkeys(ids, 1234)  # ctr train's check passes as for the source
    assert json.loads((tmp_path / "out" / "embed_config.json").read_text())["users_snapshot_times"] == [1234]


def test_a_vector_moves_only_among_users_of_its_own_snapshot_time(tmp_path):
    """Late-snapshot users (time 2000) hold vectors of clicks up to 2000: given to a T0 user (1234) they would
    feed rows between 1234 and 2000, before the clicks they were made from."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_table(folder / ITEM_TABLE, ["a", "b"], np.eye(2, dtype=np.float32))
    times = [1234 if n % 3 else 2000 for n in range(30)]
    users = np.arange(60, dtype=np.float32).reshape(30, 2)
    write_table(folder / USER_TABLE, [f"u{n}" for n in range(30)], users, as_of=times)
    (folder / "embed_config.json").write_text(json.dumps({"users_snapshot_times": [1234, 2000]}))
    shuffle_users(folder, tmp_path / "out", seed=0)
    ids, shuffled = read_table(tmp_path / "out" / USER_TABLE)
    assert table_user_times(tmp_path / "out") == dict(zip(ids, times))  # every user keeps their own time
    source_time = {tuple(v): t for v, t in zip(users, times)}
    assert [source_time[tuple(v)] for v in shuffled] == times  # each vector went to a user of its own time
    moved = (shuffled != users).any(1)
    assert moved[np.array(times) == 2000].sum() >= 5 and moved[np.array(times) == 1234].sum() >= 10


def test_per_user_times_get_a_vector_from_an_earlier_snapshot(tmp_path):
    """ctr prepare --snapshot-clicks gives nearly every user their own time: permuting within a time would move
    nothing, so each user gets the vector of a user whose snapshot precedes theirs (never a later one)."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_table(folder / ITEM_TABLE, ["a", "b"], np.eye(2, dtype=np.float32))
    times = [1000 + (n * 7) % 200 for n in range(200)]
    users = np.arange(1, 401, dtype=np.float32).reshape(200, 2)
    write_table(folder / USER_TABLE, [f"u{n}" for n in range(200)], users, as_of=times)
    (folder / "embed_config.json").write_text("{}")
    shuffle_users(folder, tmp_path / "out", seed=0)
    ids, moved = read_table(tmp_path / "out" / USER_TABLE)
    assert table_user_times(tmp_path / "out") == dict(zip(ids, times))
    source_time = {tuple(v): t for v, t in zip(users, times)}
    first = int(np.argmin(times))
    assert not moved[first].any()  # the earliest user has no earlier donor
    donors = [source_time[tuple(v)] for n, v in enumerate(moved) if n != first]
    assert all(d < t for d, t in zip(donors, [t for n, t in enumerate(times) if n != first]))
    assert len({tuple(v) for v in moved}) > 100  # spread over many donors, not a few early ones


def test_earlier_donors_stay_within_the_window():
    times = np.arange(500)
    donor = B.earlier_donors(times, np.random.default_rng(1), window=10)
    assert donor[0] == -1 and all(n - 10 <= donor[n] < n for n in range(1, 500))


def test_permute_within_keeps_every_position_in_its_group():
    groups = np.array([0, 1, 0, 1, 1, 2, 0])
    order = permute_within(groups, np.random.default_rng(0))
    assert sorted(order) == list(range(7)) and (groups[order] == groups).all()


def test_a_table_without_a_snapshot_is_refused(tmp_path):
    source, _ = tables(tmp_path / "in", None)
    with pytest.raises(SystemExit, match="no snapshot time"):
        shuffle_users(source, tmp_path / "out", seed=0)
    assert not (tmp_path / "out").exists()


def test_coclick_oracle_puts_items_one_user_group_clicks_together(tmp_path):
    import pandas as pd

    from bench.ctr_vectors import coclick

    data = tmp_path / "prepared"
    data.mkdir()
    items = [f"i{n}" for n in range(12)]
    (data / "items.jsonl").write_text("".join(json.dumps({"item_id": i, "name": i}) + "\n" for i in items))
    rows = [(f"u{u}", items[i], 1) for u in range(10) for i in (range(6) if u < 5 else range(6, 12))]
    rows += [("u0", "i7", 0)]  # a non-click joins nothing
    pd.DataFrame(rows, columns=["user_id", "item_id", "label"]).to_parquet(data / "samples.parquet")
    assert coclick(data, tmp_path / "out", dim=2) == 12
    ids, vectors = read_table(tmp_path / "out" / ITEM_TABLE)
    sim = vectors @ vectors.T
    assert list(ids) == items and np.allclose(np.diag(sim), 1, atol=1e-5)
    assert sim[:6, :6].min() > 0.99 and abs(sim[:6, 6:]).max() < 0.01  # the two user groups, apart
    with pytest.raises(SystemExit, match="rank 12 needs more"):
        coclick(data, tmp_path / "big", dim=12)
