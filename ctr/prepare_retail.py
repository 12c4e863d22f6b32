"""UCI Online Retail parquet -> RawData: purchases are clicks, negatives are sampled (seeded, stated in the card).

Cleaning, product names and categories are those of data/sample (ctr/retail.py, one copy). Then:
items bought in >= min_item_baskets baskets are kept; max_users customers are drawn uniformly; each
(basket, item) line of theirs is a positive; each basket gets `negatives` sampled items per positive line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ground.errors import ConfigError
from ground import records as R
from ctr.raw import Log, PrepareConfig, RawData
from ctr.retail import build_catalog, load_purchases, price_band

COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
NEGATIVE_RULE = (
    "per basket, {k} negative(s) per purchased line, drawn without replacement from the kept items sold (to any "
    "customer) in the basket's calendar month, with probability proportional to the number of that month's baskets "
    "holding the item, never an item in that basket; a negative gets the basket's ts; fewer when the month offers "
    "fewer items. AUC on this set ranks purchases against popularity-sampled items of the same month: it is not "
    "impression AUC and depends on this rule"
)


def parquet_path(raw: Path) -> Path:
    """--raw is the parquet file or a folder holding exactly one .parquet file."""
    if raw.is_file():
        return raw
    found = sorted(raw.glob("*.parquet")) if raw.is_dir() else []
    if len(found) != 1:
        raise ConfigError(f"{raw}: expected a parquet file or a folder with one .parquet file, found {len(found)}")
    return found[0]


def check_columns(path: Path) -> None:
    """Stop before reading if a column the cleaning needs is missing."""
    try:
        names = set(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"{path}: not a readable parquet file ({exc})") from None
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)} (expected the UCI Online Retail columns)")


def pick_users(lines: pd.DataFrame, max_users: int, rng: np.random.Generator) -> pd.DataFrame:
    """The lines of max_users customers drawn uniformly without replacement (all when 0 or fewer exist)."""
    users = np.sort(lines["user_id"].unique())
    if max_users and max_users < len(users):
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    return lines[lines["user_id"].isin(set(users))]


def month_negatives(basket: np.ndarray, item: np.ndarray, k: np.ndarray, weight: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For each basket b, k[b] pool items drawn without replacement with prob ~ weight, none of the basket's own.

    basket, item: (L,) the basket number and pool position of each purchased line; k: (B,); weight: (P,).
    Returns (basket number, pool position) of each drawn item. Gumbel top-k: the k largest of
    log(weight) + Gumbel noise are a weighted draw without replacement.
    """
    keys = np.log(weight)[None, :] + rng.gumbel(size=(len(k), len(weight)))  # (B, P)
    keys[basket, item] = -np.inf
    order = np.argsort(-keys, axis=1, kind="stable")  # (B, P), best first
    k = np.minimum(k, len(weight) - np.bincount(basket, minlength=len(k)))
    rows, cols = np.nonzero(np.arange(len(weight))[None, :] < k[:, None])  # the first k[b] of each row
    return rows, order[rows, cols]


def sample_negatives(pos: pd.DataFrame, sold: pd.DataFrame, negatives: int, rng: np.random.Generator,
                     log: Log) -> pd.DataFrame:
    """Negative events for the baskets of `pos`, month by month (months in order, so the draw is seeded)."""
    out = []
    for month, lines in pos.groupby("month", sort=True):
        month_sold = sold[sold["month"] == month].groupby("StockCode").size()  # baskets per item that month
        pool = month_sold.index
        basket, invoices = pd.factorize(lines["InvoiceNo"], sort=True)
        firsts = lines.groupby("InvoiceNo", sort=True).first()  # one row per basket, in `invoices` order
        b, drawn = month_negatives(basket, pool.get_indexer(lines["StockCode"]), negatives * firsts["n"].to_numpy(),
                                   month_sold.to_numpy(dtype=float), rng)
        out.append(pd.DataFrame({"user_id": firsts["user_id"].to_numpy()[b], "StockCode": pool.to_numpy()[drawn],
                                 "ts": firsts["ts"].to_numpy()[b], "InvoiceNo": np.asarray(invoices)[b]}))
        log(f"  {month}: {len(invoices):,} baskets, {len(b):,} negatives")
    return pd.concat(out, ignore_index=True)


def retail_events(lines: pd.DataFrame, config: PrepareConfig, rng: np.random.Generator,
                  log: Log) -> pd.DataFrame:
    """Positives (each basket line of a drawn user) and their sampled negatives, basket by basket in time order."""
    sold = lines.drop_duplicates(["InvoiceNo", "StockCode"])
    pos = pick_users(sold, config.max_users, rng).sort_values(["ts", "InvoiceNo", "line"], kind="stable")
    pos = pos.assign(n=pos.groupby("InvoiceNo")["StockCode"].transform("size"))
    neg = sample_negatives(pos, sold, config.negatives, rng, log)
    events = pd.concat([pos[["user_id", "StockCode", "ts", "InvoiceNo"]].assign(label=1),
                        neg.assign(label=0)], ignore_index=True)
    events = events.sort_values(["ts", "InvoiceNo", "label"], ascending=[True, True, False], kind="stable")
    return pd.DataFrame({R.USER_ID: events["user_id"].astype(str).to_numpy(),
                         R.ITEM_ID: events["StockCode"].astype(str).to_numpy(),
                         R.LABEL: events["label"].to_numpy(np.int8), R.TS: events["ts"].to_numpy(np.int64)})


def retail_tables(lines: pd.DataFrame, catalog: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Item table (readable name, category, price band) and user table (most frequent country)."""
    items = pd.DataFrame({
        R.NAME: catalog["name"], R.ORIGINAL_NAME: catalog["original_name"].str.strip(),
        R.CATEGORY: catalog["category"],
        R.ATTRIBUTES: [{"unit_price": float(p)} for p in catalog["unit_price"]],
        "price_band": price_band(catalog["unit_price"].tolist()),
    }, index=pd.Index(catalog.index.astype(str), name=R.ITEM_ID))
    counts = lines.groupby(["user_id", "Country"]).size().reset_index(name="k")
    counts = counts.sort_values(["user_id", "k", "Country"], ascending=[True, False, True])
    country = counts.drop_duplicates("user_id").set_index("user_id")["Country"].astype(str)
    users = pd.DataFrame({R.PROFILE: [{"country": c} for c in country], "country": country.to_numpy()},
                         index=pd.Index(country.index.astype(str), name=R.USER_ID))
    return items, users


def load_retail(config: PrepareConfig, log: Log) -> RawData:
    """Clean the purchases, keep items and users by the size flags, add sampled negatives."""
    path = parquet_path(config.raw)
    check_columns(path)
    rng = np.random.default_rng(config.seed)  # used in this order: users, then negatives month by month
    lines = load_purchases(path)
    catalog = build_catalog(lines)
    kept = catalog[catalog["clicks"] >= config.min_item_baskets]
    lines_kept = lines[lines["StockCode"].isin(set(kept.index))]
    log(f"{path}: {len(lines):,} clean purchase lines, {len(kept):,} of {len(catalog):,} items in >= "
        f"{config.min_item_baskets} baskets")
    events = retail_events(lines_kept, config, rng, log)
    items, users = retail_tables(lines, kept)
    protocol = {
        "click_rule": "a purchase: each (basket, item) line of a drawn customer is label 1 (repeat purchases in "
                      "later baskets are further positives)",
        "sample_rule": f"items bought in >= {config.min_item_baskets} baskets; "
                       + (f"{config.max_users} customers drawn uniformly (seed {config.seed})" if config.max_users
                          else "all customers") + "; every positive and every sampled negative is one sample",
        "negative_rule": NEGATIVE_RULE.format(k=config.negatives),
        "cleaning": "as data/sample/README.md: no cancellations, returns, anonymous, free or non-product lines",
        "repeats": "a customer may buy an item again, so a history may hold an item twice, and a target (positive "
                   "or negative) may be in its own history from an earlier basket: a real repeat-purchase signal",
    }
    notes = {"clean_purchase_lines": len(lines), "clean_items": len(catalog), "kept_items": len(kept),
             "clean_users": int(lines["user_id"].nunique()), "drawn_users": int(events[R.USER_ID].nunique())}
    return RawData(items=items, users=users, events=events, fields={"user": ["country"],
                   "item": [R.CATEGORY, "price_band"]}, protocol=protocol, sources=[path],
                   title="Online Retail (UCI)", notes=notes)
