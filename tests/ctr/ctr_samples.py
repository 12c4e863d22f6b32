"""A tiny synthetic prepared folder that follows the `ctr prepare` contract (see _brief/schema.md).

Each user prefers one genre; a sample is a click with probability 0.85 when the
item's genre is the user's and 0.15 otherwise, so a model has something to learn.
Splits are by a global time cut (70% / 15% / 15% of the timestamps).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

GENRES = ["Action", "Comedy", "Drama", "Horror"]


def items_records(n_items: int, rng) -> list[dict]:
    out = []
    for n in range(n_items):
        genre = GENRES[n % len(GENRES)]
        out.append({"item_id": f"i{n}", "name": f"{genre} film number {n}", "category": genre,
                    "attributes": {"year": int(1980 + rng.integers(0, 30)), "genres": [genre]},
                    "stats": {"exposures": 0, "clicks": 0}})
    return out


def sample_rows(n_users: int, items: list[dict], per_user: int, max_history: int, rng) -> list[dict]:
    rows, ts = [], 1_000_000
    for u in range(n_users):
        liked, clicked = GENRES[u % len(GENRES)], []
        gender = "MF"[u % 2]
        for _ in range(per_user):
            item = items[int(rng.integers(0, len(items)))]
            label = int(rng.random() < (0.85 if item["category"] == liked else 0.15))
            ts += int(rng.integers(1, 100))
            rows.append({"user_id": f"u{u}", "item_id": item["item_id"], "label": label, "ts": ts,
                         "history": [i for i in clicked if i != item["item_id"]][-max_history:], "gender": gender,
                         "genre": item["category"], "year": str(item["attributes"]["year"])})
            if label:
                clicked.append(item["item_id"])
    return rows


def assign_splits(df: pd.DataFrame) -> pd.DataFrame:
    """Global time cut: the first 70% of timestamps train, the next 15% validate, the rest test."""
    cut_val, cut_test = df["ts"].quantile(0.70), df["ts"].quantile(0.85)
    df["split"] = np.where(df["ts"] <= cut_val, "train", np.where(df["ts"] <= cut_test, "val", "test"))
    return df


def write_prepared(folder: Path, n_users: int = 24, n_items: int = 32, per_user: int = 30, max_history: int = 6,
                   seed: int = 0) -> Path:
    """Write samples.parquet, items.jsonl, users.jsonl and card.json into folder; return it."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    items = items_records(n_items, rng)
    # interleave users in time so the global cut leaves every user in every split
    df = pd.DataFrame(sample_rows(n_users, items, per_user, max_history, rng))
    df["ts"] = df.groupby("user_id").cumcount() * 1000 + df["user_id"].str[1:].astype(int)
    df = assign_splits(df.sort_values("ts").reset_index(drop=True))
    df = rebuild_histories(df, max_history)
    df["label"] = df["label"].astype("int8")
    df.to_parquet(folder / "samples.parquet", index=False)
    with (folder / "items.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in items)
    train = df[df["split"] == "train"]
    as_of = int(df["ts"].min() + (train["ts"].max() - df["ts"].min()) // 2)  # users.jsonl: a snapshot at T0
    with (folder / "users.jsonl").open("w") as fh:
        for user, rows in train.groupby("user_id", sort=True):
            history = rows[(rows["label"] == 1) & (rows["ts"] <= as_of)]["item_id"].tolist()[-max_history:]
            fh.write(json.dumps({"user_id": user, "history": history, "profile": {"gender": rows["gender"].iloc[0]},
                                 "history_as_of": as_of}) + "\n")
    (folder / "card.json").write_text(json.dumps(card(df, max_history) | {"users_snapshot_ts": as_of}))
    return folder


def rebuild_histories(df: pd.DataFrame, max_history: int) -> pd.DataFrame:
    """Each row's history: the user's clicks with a strictly earlier ts, oldest first, never the target."""
    histories, clicked = [], {}
    for row in df.itertuples():
        past = clicked.setdefault(row.user_id, [])
        histories.append([i for i in past if i != row.item_id][-max_history:])
        if row.label:
            past.append(row.item_id)
    df["history"] = histories
    return df


def card(df: pd.DataFrame, max_history: int) -> dict:
    splits = {name: {"samples": int(len(g)), "positives": int(g["label"].sum()),
                     "positive_rate": float(g["label"].mean()), "users": int(g["user_id"].nunique()),
                     "items": int(g["item_id"].nunique())} for name, g in df.groupby("split")}
    return {"dataset": "synthetic", "protocol": {"click rule": "synthetic", "split rule": "global time cut 70/15/15",
                                                  "max_history": max_history, "seed": 0},
            "fields": {"user": ["gender"], "item": ["genre", "year"]}, "max_history": max_history,
            "splits": splits, "history_length_quantiles": {}, "sources": [], "config": {}}


def write_control_prepared(folder: Path, n_users: int = 120, n_items: int = 240, per_user: int = 60,
                           max_history: int = 10, seed: int = 0) -> tuple[Path, dict[str, int]]:
    """A prepared folder where a click depends on a hidden item attribute alone, and half the items are new
    after the train cut (so their IDs teach nothing); returns it and {item_id: attribute}.

    The attribute is in no field a backbone sees (the genre is drawn independently of it): only a knowledge
    vector that encodes it can tell a new item's click rate. Clicks: probability 0.8 for attribute 1, 0.2 for 0.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    attribute = {f"i{n}": int(rng.random() < 0.5) for n in range(n_items)}
    genre = {f"i{n}": GENRES[int(rng.integers(0, len(GENRES)))] for n in range(n_items)}
    old, new = [f"i{n}" for n in range(n_items // 2)], [f"i{n}" for n in range(n_items // 2, n_items)]
    rows = []
    for u in range(n_users):
        for k in range(per_user):
            late = k >= per_user * 0.6  # the last 40% of each user's rows come after the train cut
            item = (new if late and rng.random() < 0.7 else old)[int(rng.integers(0, n_items // 2))]
            rows.append({"user_id": f"u{u}", "item_id": item, "ts": k * 1000 + u, "gender": "MF"[u % 2],
                         "label": int(rng.random() < (0.8 if attribute[item] else 0.2)),
                         "genre": genre[item], "year": "2000"})
    df = pd.DataFrame(rows).sort_values("ts").reset_index(drop=True)
    cut_train, cut_val = per_user * 0.6 * 1000, per_user * 0.8 * 1000
    df["split"] = np.where(df["ts"] < cut_train, "train", np.where(df["ts"] < cut_val, "val", "test"))
    df = rebuild_histories(df, max_history)
    df["label"] = df["label"].astype("int8")
    df.to_parquet(folder / "samples.parquet", index=False)
    items = [{"item_id": i, "name": f"{genre[i]} thing {i}", "category": genre[i]} for i in attribute]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    users = [{"user_id": f"u{u}", "history": [], "profile": {}, "history_as_of": 0} for u in range(n_users)]
    (folder / "users.jsonl").write_text("".join(json.dumps(r) + "\n" for r in users))
    (folder / "card.json").write_text(json.dumps(card(df, max_history) | {"users_snapshot_ts": 0}))
    return folder, attribute
