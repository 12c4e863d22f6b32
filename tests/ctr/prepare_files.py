"""Made-up raw files in each format `ctr prepare` reads (never real MovieLens data), and checks of its output."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

MOVIES_1M = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi",
    "3::Heat (1995)::Action|Crime|Thriller",
    "4::Sabrina (1995)::Comedy|Romance",
    "5::Nixon (1995)::Drama",
    "6::GoldenEye (1995)::Action|Adventure|Thriller",
    "7::Balto (1995)::Animation|Children's",
    "8::Casino (1995)::Drama|Thriller",
]
USERS_1M = ["1::F::1::10::48067", "2::M::56::16::70072", "3::M::25::15::55117", "4::M::45::7::02460",
            "5::M::25::20::55455", "6::F::50::9::55117"]


def random_ratings(n_users: int, n_items: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """(user, item, rating, ts) rows, each pair once; timestamps drawn from a few values so ties are common."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        for item in rng.choice(np.arange(1, n_items + 1), size=rng.integers(3, n_items + 1), replace=False):
            rows.append((user, int(item), int(rng.integers(1, 6)), 1_000_000 + 60 * int(rng.integers(0, 12))))
    return rows


LATE_USERS = (5, 6)  # grid_ratings(late=True): these start rating after T0 (the last 20 of its 40 grid steps)


def grid_ratings(seed: int = 0, per_user: int = 8, late: bool = False) -> list[tuple[int, int, int, int]]:
    """(user, movie, rating, ts) for ml1m_folder's 6 users and 8 movies: every user rates `per_user` movies once;
    ts from a coarse grid of 40 minutes, so ties happen; with `late`, LATE_USERS rate only in its second half."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, len(USERS_1M) + 1):
        first = 20 if late and user in LATE_USERS else 0
        for item in rng.choice(np.arange(1, len(MOVIES_1M) + 1), size=per_user, replace=False):
            rows.append((user, int(item), int(rng.integers(1, 6)), 1_000_000 + 60 * int(rng.integers(first, 40))))
    return rows


def write_text(path: Path, lines: list[str], encoding: str = "latin-1") -> Path:
    """Write lines; gzip when the name ends in .gz."""
    data = ("\n".join(lines) + "\n").encode(encoding)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def ml1m_folder(root: Path, gz: bool = False, ratings_name: str = "ratings.dat",
                ratings: list[tuple] | None = None) -> Path:
    """A tiny ML-1M folder (Latin-1, like the original)."""
    root.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    write_text(root / f"movies.dat{ext}", MOVIES_1M)
    write_text(root / f"users.dat{ext}", USERS_1M)
    rows = ratings if ratings is not None else random_ratings(len(USERS_1M), len(MOVIES_1M))
    write_text(root / f"{ratings_name}{ext}", ["::".join(map(str, r)) for r in rows])
    return root


def ml100k_folder(root: Path, ratings: list[tuple] | None = None) -> Path:
    """A tiny ML-100K folder: u.item (pipe, 19 genre flags), u.user (pipe), u.data (tab)."""
    root.mkdir(parents=True, exist_ok=True)
    flags = ["0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0", "0|0|0|0|0|1|0|0|1|0|0|0|0|0|0|0|0|0|0",
             "1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0"]
    items = [f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags[0]}",
             f"2|Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)|01-Jan-1995||http://x|{flags[1]}",
             f"3|unknown|||http://x|{flags[2]}", f"4|Café au lait|01-Jan-1994||http://x|{flags[1]}"]
    write_text(root / "u.item", items)
    write_text(root / "u.user", ["1|24|M|technician|85711", "2|53|F|other|94043", "3|15|M|student|32067"])
    rows = ratings if ratings is not None else random_ratings(3, 4, seed=1)
    write_text(root / "u.data", ["\t".join(map(str, r)) for r in rows])
    return root


def retail_parquet(path: Path) -> Path:
    """Invoice lines over two months: 4 customers, 6 products, plus a cancellation, postage and an anonymous line."""
    lines = []
    baskets = [  # invoice, customer, date, items
        ("536001", 1, "2010-12-01 09:00", ["10001", "10002", "10003"]),
        ("536002", 2, "2010-12-02 10:00", ["10001", "10004"]),
        ("536003", 1, "2010-12-05 11:00", ["10002", "10005"]),
        ("536004", 3, "2010-12-09 12:00", ["10003", "10006", "10001"]),
        ("536005", 4, "2011-01-03 09:30", ["10004", "10005"]),
        ("536006", 1, "2011-01-04 09:30", ["10001", "10006"]),
        ("536007", 2, "2011-01-10 15:00", ["10002", "10003", "10006"]),
        ("536008", 3, "2011-01-12 15:00", ["10005"]),
        ("536009", 4, "2011-01-20 08:00", ["10001", "10002"]),
        ("536010", 2, "2011-01-25 08:00", ["10006", "10003"]),
    ]
    names = {"10001": "WHITE HANGING HEART T-LIGHT HOLDER", "10002": "JUMBO BAG RED RETROSPOT",
             "10003": "REGENCY CAKESTAND 3 TIER", "10004": "PARTY BUNTING", "10005": "LUNCH BAG BLACK SKULL.",
             "10006": "SET OF 3 CAKE TINS PANTRY DESIGN "}
    for invoice, customer, date, items in baskets:
        for code in items:
            lines.append((invoice, code, names[code], 2, date, 1.25 + int(code[-1]), float(customer), "France"
                          if customer == 4 else "United Kingdom"))
    lines += [("C536011", "10001", names["10001"], -1, "2011-01-26 08:00", 2.0, 1.0, "United Kingdom"),
              ("536012", "POST", "POSTAGE", 1, "2011-01-26 08:00", 18.0, 1.0, "United Kingdom"),
              ("536013", "10002", names["10002"], 1, "2011-01-26 08:00", 2.0, float("nan"), "United Kingdom")]
    df = pd.DataFrame(lines, columns=["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                                      "UnitPrice", "CustomerID", "Country"])
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
    df.to_parquet(path)
    return path


def read_output(out: Path) -> tuple[pd.DataFrame, dict, list[dict], list[dict]]:
    """samples, card, items, users of a prepared folder."""
    samples = pd.read_parquet(out / "samples.parquet")
    samples["history"] = samples["history"].map(list)
    card = json.loads((out / "card.json").read_text())
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    users = [json.loads(line) for line in (out / "users.jsonl").read_text().splitlines()]
    return samples, card, items, users


def expected_history(samples: pd.DataFrame, max_history: int) -> list[list[str]]:
    """The plain-Python history of every row: that user's clicks with a smaller ts, in row order, the last N."""
    out: dict[int, list[str]] = {}
    for _, rows in samples.groupby("user_id", sort=False):
        seen: list[tuple[int, str]] = []  # (ts, item) of this user's clicks so far, in row order
        for i, ts, item, label in zip(rows.index, rows["ts"], rows["item_id"], rows["label"]):
            out[i] = [it for t, it in seen if t < ts][-max_history:]
            if label == 1:
                seen.append((ts, item))
    return [out[i] for i in samples.index]


def assert_no_leak(samples: pd.DataFrame, max_history: int) -> None:
    """Every row: history = the plain-Python one; every history item was clicked by the user strictly earlier."""
    assert samples["ts"].is_monotonic_increasing
    assert samples["history"].tolist() == expected_history(samples, max_history)
    first_click = samples[samples["label"] == 1].groupby(["user_id", "item_id"])["ts"].min().to_dict()
    for user, ts, history in zip(samples["user_id"], samples["ts"], samples["history"]):
        assert all(first_click[(user, item)] < ts for item in history)


def train_stats(samples: pd.DataFrame) -> dict[str, dict[str, int]]:
    """item_id -> {exposures, clicks} counted on the train rows."""
    train = samples[samples["split"] == "train"]
    return {i: {"exposures": len(g), "clicks": int(g["label"].sum())} for i, g in train.groupby("item_id")}


def snapshot_histories(samples: pd.DataFrame, max_history: int, as_of: int) -> dict[str, list[str]]:
    """user_id -> the user's clicks with ts <= as_of (T0) in row order, the last N (users without any: [])."""
    past = samples[(samples["ts"] <= as_of) & (samples["label"] == 1)]
    clicks = past.groupby("user_id")["item_id"].agg(list).to_dict()
    return {u: clicks.get(u, [])[-max_history:] for u in samples["user_id"].unique()}
