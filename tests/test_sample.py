"""Stratified allocation and importance sampling without replacement."""

from __future__ import annotations

import numpy as np
import pytest

from ground.records import INCLUSION_PROB, ITEM_ID, SAMPLING_WEIGHT, STATS
from kgen.sample import STRATUM, SampleConfig, allocate, inclusion_probs, row_weight, sample_rows


def _items(sizes: dict[str, int]) -> list[dict]:
    rows = []
    for cat, k in sizes.items():
        for j in range(k):
            rows.append({ITEM_ID: f"{cat}-{j}", "name": f"{cat} {j}", "category": cat,
                         STATS: {"exposures": 10 * (j + 1), "clicks": j}})
    return rows


SIZES = {"a": 100, "b": 25, "c": 4, "d": 1}


@pytest.mark.parametrize(("allocation", "n", "expected"), [
    ("proportional", 26, {"a": 20, "b": 5, "c": 1, "d": 0}),  # shares 20, 5, 0.8, 0.2
    ("equal", 12, {"a": 4, "b": 4, "c": 3, "d": 1}),  # c, d capped; a, b split the rest
    ("equal", 2, {"a": 1, "b": 1, "c": 0, "d": 0}),  # ties go to larger strata
    # sqrt sizes 10, 5, 2, 1: d (share 1.11) is capped at 1, the other 19 go 11.18 / 5.59 / 2.24 -> 11, 6, 2
    ("sqrt", 20, {"a": 11, "b": 6, "c": 2, "d": 1}),
])
def test_allocation_schemes_give_expected_counts(allocation, n, expected):
    assert allocate(SIZES, n, allocation) == expected


@pytest.mark.parametrize("allocation", ["proportional", "equal", "sqrt"])
@pytest.mark.parametrize("n", [1, 5, 37, 129, 130, 500])
def test_allocation_sums_to_n_and_respects_sizes(allocation, n):
    counts = allocate(SIZES, n, allocation)
    assert sum(counts.values()) == min(n, sum(SIZES.values()))
    assert all(0 <= counts[s] <= SIZES[s] for s in SIZES)


@pytest.mark.parametrize("allocation", ["proportional", "equal", "sqrt"])
def test_sample_rows_counts_strata_and_no_duplicates(allocation):
    rows = _items(SIZES)
    picked = sample_rows(rows, SampleConfig(n=40, by="category", allocation=allocation, weight="exposures", seed=3))
    ids = [r[ITEM_ID] for r in picked]
    assert len(ids) == 40 == len(set(ids))
    per = {s: sum(r[STRATUM] == s for r in picked) for s in SIZES}
    assert per == allocate(SIZES, 40, allocation)
    assert all(r[STRATUM] == r["category"] for r in picked)


def test_more_than_population_returns_every_row_with_probability_one():
    rows = _items({"a": 3, "b": 2})
    picked = sample_rows(rows, SampleConfig(n=50, by="category", weight="clicks"))
    assert sorted(r[ITEM_ID] for r in picked) == sorted(r[ITEM_ID] for r in rows)
    assert all(r[INCLUSION_PROB] == 1.0 for r in picked)


def test_rows_are_copies_and_input_is_untouched():
    rows = _items({"a": 5})
    picked = sample_rows(rows, SampleConfig(n=2, weight="exposures"))
    assert all(SAMPLING_WEIGHT not in r for r in rows)
    assert all(r[STRATUM] == "all" for r in picked)
    assert picked[0][SAMPLING_WEIGHT] == row_weight(picked[0], "exposures")


def test_same_seed_same_sample_other_seed_differs():
    rows = _items(SIZES)
    config = SampleConfig(n=30, by="category", allocation="sqrt", weight="ctr", seed=11)
    first = sample_rows(rows, config)
    assert first == sample_rows(rows, config)
    other = sample_rows(rows, SampleConfig(n=30, by="category", allocation="sqrt", weight="ctr", seed=12))
    assert [r[ITEM_ID] for r in first] != [r[ITEM_ID] for r in other]


def test_heavier_rows_are_picked_more_often():
    # One stratum of 20 rows; row 0 weighs 10, the others 1 (clicks 9 / 0 with add-one).
    rows = [{ITEM_ID: str(i), "name": str(i), STATS: {"exposures": 100, "clicks": 9 if i == 0 else 0}} for i in range(20)]
    hits = np.zeros(20)
    for seed in range(400):
        for r in sample_rows(rows, SampleConfig(n=2, weight="clicks", seed=seed)):
            hits[int(r[ITEM_ID])] += 1
    # Exact: row 0 is picked with 10/29 + 19/29 * 10/28 = 0.58, a light row with 0.075. Generous margins.
    assert hits[0] / 400 > 0.45
    assert hits[1:].mean() / 400 < 0.12
    assert hits[0] > 3 * hits[1:].max()


def test_unweighted_sampling_is_roughly_uniform():
    rows = [{ITEM_ID: str(i), "name": str(i)} for i in range(10)]
    hits = np.zeros(10)
    for seed in range(500):
        for r in sample_rows(rows, SampleConfig(n=3, seed=seed)):
            hits[int(r[ITEM_ID])] += 1
    assert np.all(np.abs(hits / 500 - 0.3) < 0.1)


def test_inclusion_probs_in_range_and_sum_to_m_per_stratum():
    rows = _items(SIZES)
    picked = sample_rows(rows, SampleConfig(n=40, by="category", weight="exposures", seed=0))
    assert all(0 < r[INCLUSION_PROB] <= 1 for r in picked)
    w = np.array([row_weight(r, "exposures") for r in rows if r["category"] == "a"])
    pi = inclusion_probs(w, 31)
    assert pi.sum() == pytest.approx(31)
    assert np.all((pi > 0) & (pi <= 1))


def test_inclusion_probs_cap_heavy_rows_at_one():
    pi = inclusion_probs(np.array([100.0, 1, 1, 1, 1]), 2)
    assert pi[0] == 1.0
    assert pi[1:] == pytest.approx([0.25] * 4)


def test_weights_smoothing_and_user_history_len():
    item = {ITEM_ID: "x", STATS: {"exposures": 0, "clicks": 0}}
    assert row_weight(item, "clicks") == 1.0
    assert row_weight(item, "ctr") == 0.5
    assert row_weight({"user_id": "u1", "history": ["a", "b"]}, "history_len") == 3.0


def test_bad_stats_name_the_row():
    with pytest.raises(ValueError, match="row x: stats.exposures"):
        row_weight({ITEM_ID: "x", STATS: {}}, "exposures")
    with pytest.raises(ValueError, match="negative"):
        row_weight({ITEM_ID: "x", STATS: {"clicks": -1}}, "clicks")


def test_dotted_by_reaches_profile_and_missing_forms_a_stratum():
    users = [{"user_id": f"u{i}", "history": ["a"], "profile": {"country": c}} for i, c in enumerate(["UK", "UK", "FR"])]
    users.append({"user_id": "u9", "history": ["a"]})
    picked = sample_rows(users, SampleConfig(n=4, by="profile.country", weight="history_len"))
    assert sorted(r[STRATUM] for r in picked) == ["(missing)", "FR", "UK", "UK"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "n must be a positive integer, got 0"),
    ({"n": 5, "allocation": "cube"}, "got 'cube'"),
    ({"n": 5, "weight": "views"}, "got 'views'"),
    ({"n": 5, "by": ""}, "by must be"),
])
def test_config_validation_names_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SampleConfig(**kwargs)
