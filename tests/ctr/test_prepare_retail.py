"""`ctr prepare --dataset online-retail` on a made-up parquet: cleaning, seeded negatives, counts, leakage."""

from __future__ import annotations

import pandas as pd
import pytest
from prepare_files import assert_no_leak, read_output, retail_parquet, snapshot_histories

from ctr.prepare import prepare
from ctr.raw import PrepareConfig


def run(raw, out, **kw):
    kw = {"min_item_baskets": 1, "max_users": 0, "split_fractions": (0.6, 0.2, 0.2)} | kw
    return prepare(PrepareConfig(dataset="online-retail", raw=raw, output=out, **kw), log=lambda m: None)


@pytest.fixture
def parquet(tmp_path):
    return retail_parquet(tmp_path / "online_retail.parquet")


def test_purchases_are_positives_and_card_counts_match_the_parquet(tmp_path, parquet):
    card = run(parquet, tmp_path / "out")
    samples, _, items, users = read_output(tmp_path / "out")
    raw = pd.read_parquet(parquet)
    clean = raw[~raw["InvoiceNo"].str.startswith("C") & raw["CustomerID"].notna() & (raw["StockCode"] != "POST")]
    pos = samples[samples["label"] == 1]
    assert len(pos) == len(clean.drop_duplicates(["InvoiceNo", "StockCode"]))
    assert set(pos["user_id"]) == {"u1", "u2", "u3", "u4"} and "POST" not in set(samples["item_id"])
    assert sum(s["samples"] for s in card["splits"].values()) == len(samples)
    for name, counts in card["splits"].items():
        part = samples[samples["split"] == name]
        assert (counts["samples"], counts["positives"], counts["items"]) == (
            len(part), int(part["label"].sum()), part["item_id"].nunique())
    heart = next(i for i in items if i["item_id"] == "10001")
    assert heart["name"] == "White Hanging Heart T-Light Holder" and heart["category"] == "candles & lights"
    assert next(u for u in users if u["user_id"] == "u4")["profile"] == {"country": "France"}
    assert set(samples["price_band"]) <= {"2-5", "5-10"} and card["fields"]["item"] == ["category", "price_band"]


def test_negatives_come_from_the_same_month_and_never_from_the_basket(tmp_path, parquet):
    run(parquet, tmp_path / "out", negatives=2)
    samples, *_ = read_output(tmp_path / "out")
    month = pd.to_datetime(samples["ts"], unit="s").dt.strftime("%Y-%m")
    sold = {m: set(g["item_id"]) for m, g in samples[samples["label"] == 1].groupby(month)}
    for (_user, ts), basket in samples.groupby(["user_id", "ts"]):
        bought = set(basket.loc[basket["label"] == 1, "item_id"])
        drawn = basket.loc[basket["label"] == 0, "item_id"]
        assert not bought & set(drawn) and drawn.is_unique
        assert set(drawn) <= sold[pd.Timestamp(ts, unit="s").strftime("%Y-%m")]
        # 2 per positive unless the month offers fewer other items
        available = len(sold[pd.Timestamp(ts, unit="s").strftime("%Y-%m")] - bought)
        assert len(drawn) == min(2 * len(bought), available)


def test_seeded_draw_is_reproducible_and_the_seed_matters(tmp_path, parquet):
    run(parquet, tmp_path / "a", max_users=3, seed=1)
    run(parquet, tmp_path / "b", max_users=3, seed=1)
    run(parquet, tmp_path / "c", max_users=3, seed=2)
    a, b, c = (read_output(tmp_path / n)[0] for n in "abc")
    assert a.equals(b) and a["user_id"].nunique() == 3
    assert not a.equals(c)


def test_history_never_leaks_and_user_histories_are_a_snapshot(tmp_path, parquet):
    run(parquet, tmp_path / "out", max_history=2)
    samples, card, _, users = read_output(tmp_path / "out")
    assert_no_leak(samples, max_history=2)
    assert {u["user_id"]: u["history"] for u in users} == snapshot_histories(samples, 2, card["users_snapshot_ts"])


def test_min_item_baskets_drops_rare_items(tmp_path, parquet):
    card = run(parquet, tmp_path / "out", min_item_baskets=4)
    samples, *_ = read_output(tmp_path / "out")
    assert set(samples["item_id"]) == {"10001", "10002", "10003", "10006"}  # in 4-5 baskets; 10004, 10005 in 2, 3
    assert card["loader"]["kept_items"] == 4 and ">= 4 baskets" in card["protocol"]["sample_rule"]


def test_missing_column_is_refused(tmp_path, parquet):
    pd.read_parquet(parquet).drop(columns=["Country"]).to_parquet(parquet)
    with pytest.raises(ValueError, match="missing column"):
        run(parquet, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_price_bands_fixed_edges():
    from ctr.retail import price_band

    assert price_band([0.5, 1.0, 2.95, 7, 12.5, None, float("nan")]) == ["under 1", "1-2", "2-5", "5-10", "10+", "", ""]
