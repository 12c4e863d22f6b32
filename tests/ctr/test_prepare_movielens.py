"""`ctr prepare` on made-up MovieLens 1M and 100K folders: parsing, protocol, leakage, split, train-only stats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prepare_files import (USERS_1M, assert_no_leak, ml100k_folder, ml1m_folder, random_ratings, read_output,
                           snapshot_histories, train_stats, write_text)

from ctr.prepare import prepare
from ctr.raw import PrepareConfig
from ground.errors import RecordError


def run(dataset, raw, out, **kw):
    return prepare(PrepareConfig(dataset=dataset, raw=raw, output=out, **kw), log=lambda m: None)


@pytest.mark.parametrize("gz", [False, True])
def test_ml1m_parses_plain_and_gzipped_latin1(tmp_path, gz):
    ratings = random_ratings(len(USERS_1M), 8)
    raw = ml1m_folder(tmp_path / "raw", gz=gz, ratings=ratings)
    card = run("ml-1m", raw, tmp_path / "out")
    samples, _, items, users = read_output(tmp_path / "out")
    assert len(samples) == len(ratings) == sum(s["samples"] for s in card["splits"].values())
    assert samples["label"].sum() == sum(r[2] >= 4 for r in ratings)  # rating >= 4 is a click
    lost = next(i for i in items if i["item_id"] == "2")
    assert lost["name"] == "The City of Lost Children (Cité des enfants perdus, La)"  # Latin-1 é, article moved
    assert lost["attributes"] == {"year": 1995, "genres": ["Adventure", "Sci-Fi"]} and lost["category"] == "Adventure"
    assert card["fields"] == {"user": ["gender", "age", "occupation", "zip"], "item": ["year", "genre"]}
    assert next(u for u in users if u["user_id"] == "4")["profile"] == {
        "gender": "M", "age": "45-49", "occupation": "executive/managerial", "zip": "02460"}


def test_ml1m_fields_are_strings_with_zip_prefix(tmp_path):
    raw = ml1m_folder(tmp_path / "raw")
    run("ml-1m", raw, tmp_path / "out")
    samples, *_ = read_output(tmp_path / "out")
    row = samples[samples["user_id"] == "4"].iloc[0]
    assert (row["gender"], row["age"], row["occupation"], row["zip"]) == ("M", "45-49", "executive/managerial", "02")
    movie = samples[samples["item_id"] == "3"]
    assert set(movie["year"]) <= {"1995"} and set(movie["genre"]) <= {"Action"}


def test_history_never_leaks_on_every_row(tmp_path):
    raw = ml1m_folder(tmp_path / "raw", ratings=random_ratings(6, 8, seed=3))
    run("ml-1m", raw, tmp_path / "out", max_history=3)
    samples, *_ = read_output(tmp_path / "out")
    assert_no_leak(samples, max_history=3)
    assert not any(t in h for t, h in zip(samples["item_id"], samples["history"]))  # each pair is rated once
    assert samples["history"].map(len).max() == 3  # the cap binds on this data


def test_same_second_clicks_are_not_history(tmp_path):
    ratings = [(1, 1, 5, 100), (1, 2, 5, 100), (1, 3, 5, 200), (1, 4, 2, 200), (1, 5, 5, 300)]
    run("ml-1m", ml1m_folder(tmp_path / "raw", ratings=ratings), tmp_path / "out", split_fractions=(1.0, 0.0, 0.0))
    samples, *_ = read_output(tmp_path / "out")
    assert dict(zip(samples["item_id"], samples["history"])) == {
        "1": [], "2": [], "3": ["1", "2"], "4": ["1", "2"], "5": ["1", "2", "3"]}


def test_split_is_by_time_and_stats_use_train_only_and_user_histories_are_a_snapshot(tmp_path):
    run("ml-1m", ml1m_folder(tmp_path / "raw", ratings=random_ratings(6, 8, seed=5)), tmp_path / "out",
        split_fractions=(0.6, 0.2, 0.2))
    samples, card, items, users = read_output(tmp_path / "out")
    by = samples.groupby("split")["ts"]
    assert by.max()["train"] < by.min()["val"] <= by.max()["val"] < by.min()["test"]
    assert 0 < (samples["split"] == "train").sum() < len(samples)
    stats = train_stats(samples)
    assert {i["item_id"]: i["stats"] for i in items} == {
        i: stats.get(i, {"exposures": 0, "clicks": 0}) for i in samples["item_id"].unique()}
    assert {u["user_id"]: u["history"] for u in users} == snapshot_histories(samples, 50, card["users_snapshot_ts"])
    for name, counts in card["splits"].items():
        part = samples[samples["split"] == name]
        assert (counts["samples"], counts["positives"], counts["users"]) == (
            len(part), int(part["label"].sum()), part["user_id"].nunique())


def test_ratings_file_found_by_fallback_glob_and_max_user(tmp_path):
    ratings = random_ratings(6, 8)
    raw = ml1m_folder(tmp_path / "raw", gz=True, ratings_name="ratings_users1-6.dat", ratings=ratings)
    card = run("ml-1m", raw, tmp_path / "out", max_user=5)
    samples, *_ = read_output(tmp_path / "out")
    assert set(samples["user_id"].astype(int)) == {1, 2, 3, 4, 5}
    assert len(samples) == sum(r[0] <= 5 for r in ratings)
    assert card["title"] == "ML-1M (users 1-5)" and card["sources"][2]["path"].endswith("ratings_users1-6.dat.gz")
    assert len(card["sources"][2]["sha256"]) == 64


def test_two_candidate_ratings_files_ask_for_a_name(tmp_path):
    raw = ml1m_folder(tmp_path / "raw", ratings_name="ratings_a.dat")
    write_text(raw / "ratings_b.dat", ["1::1::5::100"])
    with pytest.raises(ValueError, match="matches 2 files"):
        run("ml-1m", raw, tmp_path / "out")
    run("ml-1m", raw, tmp_path / "out", ratings="ratings_b.dat")
    assert len(pd.read_parquet(tmp_path / "out" / "samples.parquet")) == 1


@pytest.mark.parametrize(("line", "problem"), [
    ("1::2::5", "expected 4 fields separated by '::', got 3: '1::2::5'"),
    ("1::2::five::100", "rating must be an integer, got 'five'"),
    ("1::2::6::100", "rating must be in 1..5, got 6"),
    ("1::99::4::100", "movie 99 is not in movies.dat"),
    ("9::2::4::100", "user 9 is not in users.dat"),
    ("1::1::3::100", "user 1 rated movie 1 twice"),
])
def test_malformed_rating_line_named_by_path_and_line(tmp_path, line, problem):
    raw = ml1m_folder(tmp_path / "raw", ratings=[(1, 1, 5, 50), (2, 1, 4, 60)])
    path = raw / "ratings.dat"
    write_text(path, ["1::1::5::50", "", "2::1::4::60", line])  # the blank line still counts
    with pytest.raises(RecordError) as err:
        run("ml-1m", raw, tmp_path / "out")
    assert str(err.value) == f"{path}:4: {problem}"
    assert not (tmp_path / "out").exists()


def test_malformed_gzipped_users_line(tmp_path):
    raw = ml1m_folder(tmp_path / "raw", gz=True)
    write_text(raw / "users.dat.gz", USERS_1M[:2] + ["3::M::25::fifteen::55117"])
    with pytest.raises(RecordError, match=r"users\.dat\.gz:3: occupation must be an integer"):
        run("ml-1m", raw, tmp_path / "out")


def test_ml100k_parses(tmp_path):
    ratings = [(1, 1, 5, 100), (1, 2, 3, 160), (2, 3, 4, 100), (2, 4, 5, 220), (3, 1, 4, 300), (3, 2, 5, 300)]
    card = run("ml-100k", ml100k_folder(tmp_path / "raw", ratings=ratings), tmp_path / "out")
    samples, _, items, users = read_output(tmp_path / "out")
    assert len(samples) == len(ratings) and card["title"] == "ML-100K"
    names = {i["item_id"]: i for i in items}
    assert names["2"]["name"] == "Shanghai Triad (Yao a yao yao dao waipo qiao)"
    assert names["2"]["attributes"]["genres"] == ["Comedy", "Drama"]
    assert "category" not in names["3"] and "attributes" not in names["3"]  # 'unknown' is no genre; no year
    assert names["4"]["name"] == "Café au lait" and names["4"]["attributes"]["year"] == 1994  # from the date
    assert next(u for u in users if u["user_id"] == "3")["profile"]["age"] == "Under 18"
    assert_no_leak(samples, max_history=50)


def test_ml100k_bad_genre_flag(tmp_path):
    raw = ml100k_folder(tmp_path / "raw")
    write_text(raw / "u.item", ["1|Toy Story (1995)|01-Jan-1995||http://x|0|2|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0"])
    with pytest.raises(RecordError, match=r"u\.item:1: genre flag Action must be in 0\.\.1, got 2"):
        run("ml-100k", raw, tmp_path / "out")


def test_cut_gzip_and_utf8_bom(tmp_path):
    raw = ml1m_folder(tmp_path / "raw", gz=True)
    data = (raw / "ratings.dat.gz").read_bytes()
    (raw / "ratings.dat.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordError, match=r"ratings\.dat\.gz: not a complete gzip file"):
        run("ml-1m", raw, tmp_path / "out")
    write_text(raw / "ratings.dat.gz", ["\ufeff1::1::5::100", "2::1::3::200"], encoding="utf-8")
    run("ml-1m", raw, tmp_path / "out")
    assert len(pd.read_parquet(tmp_path / "out" / "samples.parquet")) == 2


def test_rechorus_protocol_day_split_seen_only_context_and_every_rating_in_the_history(tmp_path):
    """5-core on clicks, split by day span, val/test users and items seen in train, context per row."""
    rng = np.random.default_rng(3)
    rows = [(u, i, int(rng.choice([3, 4, 5], p=[0.1, 0.45, 0.45])),
             1_000_000 + 86400 * int(rng.integers(0, 100)) + int(rng.integers(0, 86400)))
            for u in range(1, 6) for i in range(1, 9)]
    rows += [(6, i, 5, 1_000_000 + 86400 * 99 + i) for i in range(1, 9)]  # a user first seen in the last days
    raw = ml1m_folder(tmp_path / "raw", ratings=rows)
    card = run("ml-1m", raw, tmp_path / "out", protocol="rechorus", max_history=50)
    samples, card, items, users = read_output(tmp_path / "out")
    assert card["fields"]["user"][-3:] == ["hour", "weekday", "period"] and card["fields"]["item"] == ["year", "genres"]
    from ctr.prepare_rechorus import five_core

    cored = five_core(pd.DataFrame([(str(u), str(i), int(r >= 4), t) for u, i, r, t in rows],
                                   columns=["user_id", "item_id", "label", "ts"]))
    first, last = cored["ts"].min() // 86400, (cored["ts"] // 86400).max() - cored["ts"].min() // 86400
    days = samples["ts"] // 86400 - first
    assert (days[samples["split"] == "train"] <= 0.8 * last).all() and (days[samples["split"] == "test"] > 0.9 * last).all()
    assert "6" not in set(samples["user_id"]) and card["loader"]["val_test_rows_dropped_unseen"] > 0
    train = samples[samples["split"] == "train"]
    later = samples[samples["split"] != "train"]
    assert later["user_id"].isin(train["user_id"]).all() and later["item_id"].isin(train["item_id"]).all()
    assert later.shape[0] > 0
    hours = pd.to_datetime(samples["ts"], unit="s").dt.hour.astype(str)
    assert (samples["hour"] == hours).all()
    first = samples.groupby("user_id").head(1).index
    with_history = samples.drop(index=first)
    assert (with_history["history"].map(len) > 0).all()  # every earlier rating counts, clicked or not
    assert any("|" in g for g in samples["genres"])
    assert "ReChorus" in card["title"] and "day-span" in card["protocol"]["protocol"]


def test_five_core_repeats_until_every_user_and_item_has_five_clicks():
    from ctr.prepare_rechorus import five_core

    # item c has 5 clicks only thanks to user 9, who has 1 click: dropping user 9 drops c below 5, then c goes
    rows = [(u, i, 1) for u in range(1, 6) for i in "ab"] + [(u, "c", 1) for u in range(1, 5)] + [(9, "c", 1)]
    rows += [(u, i, 1) for u in range(1, 6) for i in "def"]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "label"])
    kept = five_core(events)
    assert 9 not in set(kept["user_id"]) and "c" not in set(kept["item_id"])
    assert kept.groupby("user_id").size().min() >= 5 and kept.groupby("item_id").size().min() >= 5
