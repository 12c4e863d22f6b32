"""Rebuild the shipped sample (data/sample/) from the UCI Online Retail data; deterministic for a seed.

    python scripts/build_sample.py            # defaults reproduce the committed files

Writes items.jsonl, users.jsonl, interactions.jsonl and build.json (counts, rules, sizes);
data/sample/README.md explains every choice made here.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ground.files import write_json, write_jsonl
from ground import records as R
from kgen.sample import allocate
from ctr.retail import build_catalog, load_purchases, month_popularity

ROOT = Path(__file__).resolve().parents[1]

MIN_HISTORY, MAX_HISTORY = 3, 50  # a user needs 3 sampled items; longer histories keep the last 50


def select_items(catalog: pd.DataFrame, n_items: int, min_baskets: int, rng: np.random.Generator) -> list[str]:
    """Cover every category: sqrt allocation, then in each category half the best sellers and half random tail."""
    eligible = catalog[catalog["clicks"] >= min_baskets]
    sizes = eligible.groupby("category").size().to_dict()
    quota = allocate(sizes, n_items, "sqrt")
    chosen: list[str] = []
    for category in sorted(quota):
        ranked = eligible[eligible["category"] == category].sort_values(["clicks"], ascending=False, kind="stable")
        head = ranked.index[: math.ceil(quota[category] / 2)].tolist()
        tail = ranked.index[len(head):].tolist()
        chosen += head + sorted(rng.choice(tail, size=quota[category] - len(head), replace=False).tolist())
    return sorted(chosen)


def exposures(df: pd.DataFrame, catalog: pd.DataFrame, items: list[str]) -> dict[str, int]:
    """Baskets in the item's sale window holding any item of its category (a proxy: no impressions exist)."""
    lines = df.assign(category=df["StockCode"].map(catalog["category"]))
    baskets = lines.drop_duplicates(["InvoiceNo", "category"])[["category", "ts"]]
    out = {}
    for category, group in baskets.groupby("category"):
        ts = np.sort(group["ts"].to_numpy())  # one entry per basket that shopped this category
        for item in (i for i in items if catalog.at[i, "category"] == category):
            lo, hi = catalog.at[item, "first_ts"], catalog.at[item, "last_ts"]
            out[item] = int(np.searchsorted(ts, hi, side="right") - np.searchsorted(ts, lo, side="left"))
    return out


def item_records(df: pd.DataFrame, catalog: pd.DataFrame, items: list[str]) -> list[dict]:
    """Item records in the schema of ground.records."""
    shown = exposures(df, catalog, items)
    return [{
        R.ITEM_ID: item,
        R.NAME: catalog.at[item, "name"],
        R.ORIGINAL_NAME: catalog.at[item, "original_name"],
        R.CATEGORY: catalog.at[item, "category"],
        R.ATTRIBUTES: {"unit_price": float(catalog.at[item, "unit_price"])},
        R.STATS: {R.EXPOSURES: shown[item], R.CLICKS: int(catalog.at[item, "clicks"])},
    } for item in items]


def first_purchases(df: pd.DataFrame, items: list[str]) -> pd.DataFrame:
    """Each (user, sampled item) once, at its first purchase, in time order."""
    bought = df[df["StockCode"].isin(set(items))].sort_values(["ts", "InvoiceNo", "line"])
    return bought.drop_duplicates(["user_id", "StockCode"])


def user_records(df: pd.DataFrame, items: list[str], n_users: int, min_hist: int, max_hist: int,
                 rng: np.random.Generator) -> list[dict]:
    """Users with at least min_hist sampled items, drawn uniformly; history = the last max_hist first purchases."""
    firsts = first_purchases(df, items)
    histories = firsts.groupby("user_id", sort=True)["StockCode"].apply(list)
    eligible = histories[histories.map(len) >= min_hist]
    picked = sorted(rng.choice(eligible.index.to_numpy(), size=min(n_users, len(eligible)), replace=False).tolist())
    countries = df.groupby(["user_id", "Country"]).size().reset_index(name="k")
    countries = countries.sort_values(["user_id", "k", "Country"], ascending=[True, False, True])
    country = countries.drop_duplicates("user_id").set_index("user_id")["Country"]
    return [{R.USER_ID: u, R.HISTORY: eligible[u][-max_hist:], R.PROFILE: {"country": country[u]}} for u in picked]


def interaction_records(df: pd.DataFrame, items: list[str], users: list[str], negatives: int,
                        rng: np.random.Generator) -> list[dict]:
    """Positives: each basket line of a sampled item; negatives: month-popularity-weighted items the user never bought."""
    ever = df.groupby("user_id")["StockCode"].agg(set)
    popularity = month_popularity(df, items)
    pos = df[df["user_id"].isin(set(users)) & df["StockCode"].isin(set(items))]
    pos = pos.drop_duplicates(["InvoiceNo", "StockCode"]).sort_values(["user_id", "ts", "InvoiceNo", "StockCode"])
    rows = []
    for (user, _invoice), basket in pos.groupby(["user_id", "InvoiceNo"], sort=False):
        ts, month = int(basket["ts"].iloc[0]), basket["month"].iloc[0]
        rows += [{R.USER_ID: user, R.ITEM_ID: i, R.LABEL: 1, R.TS: ts} for i in basket["StockCode"]]
        pool = popularity[month].drop(list(ever[user] & set(popularity[month].index)))
        k = min(negatives * len(basket), len(pool))
        drawn = rng.choice(pool.index.to_numpy(), size=k, replace=False, p=(pool / pool.sum()).to_numpy())
        rows += [{R.USER_ID: user, R.ITEM_ID: i, R.LABEL: 0, R.TS: ts} for i in sorted(drawn)]
    return rows


def category_counts(rows: list[dict]) -> dict[str, int]:
    """How many rows fall in each category, largest first."""
    return dict(Counter(r[R.CATEGORY] for r in rows).most_common())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parquet", type=Path, default=ROOT.parent / "shared/data/online-retail/online_retail.parquet")
    p.add_argument("--out", type=Path, default=ROOT / "data/sample")
    p.add_argument("--n-items", type=int, default=300)
    p.add_argument("--n-users", type=int, default=300)
    p.add_argument("--negatives", type=int, default=2, help="negatives per positive")
    p.add_argument("--min-baskets", type=int, default=10, help="an item must be in this many baskets to be picked")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.parquet.exists():
        sys.exit(f"error: {args.parquet}: no such file (see ../shared/data/README.md)")
    rng = np.random.default_rng(args.seed)
    df = load_purchases(args.parquet)
    catalog = build_catalog(df)
    items = select_items(catalog, args.n_items, args.min_baskets, rng)
    item_rows = item_records(df, catalog, items)
    user_rows = user_records(df, items, args.n_users, MIN_HISTORY, MAX_HISTORY, rng)
    inter_rows = interaction_records(df, items, [u[R.USER_ID] for u in user_rows], args.negatives, rng)
    files = {"items.jsonl": item_rows, "users.jsonl": user_rows, "interactions.jsonl": inter_rows}
    for name, rows in files.items():
        write_jsonl(args.out / name, rows)
    summary = {
        "command": " ".join(["python scripts/build_sample.py", *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("parquet", "out")},
        "clean_purchase_lines": len(df), "clean_users": int(df["user_id"].nunique()),
        "clean_items": len(catalog), "clean_baskets": int(df["InvoiceNo"].nunique()),
        "catalog_categories": category_counts(catalog.reset_index().to_dict("records")),
        "eligible_categories": category_counts(catalog[catalog["clicks"] >= args.min_baskets].to_dict("records")),
        "sample_categories": category_counts(item_rows),
        "files": {name: {"rows": len(rows), "bytes": (args.out / name).stat().st_size} for name, rows in files.items()},
        "positives": sum(r[R.LABEL] for r in inter_rows),
    }
    write_json(args.out / "build.json", summary)
    print(summary)


if __name__ == "__main__":
    main()
