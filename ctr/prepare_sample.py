"""The bundled sample (data/sample: items.jsonl, users.jsonl, interactions.jsonl) -> RawData.

The interactions already hold sampled negatives (scripts/build_sample.py). The users' histories and the
items' stats in those files span the whole period, so they are dropped here: `ctr prepare` rebuilds the
histories per sample and recounts the stats on the train split (docs/ctr_data.md, "Leakage").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ground.errors import RecordError
from ground.files import iter_jsonl
from ground import records as R
from ctr.raw import Log, PrepareConfig, RawData, check_known, check_unique
from ctr.retail import price_band


def read_checked(path: Path, kind: R.Kind) -> tuple[list[dict], list[int]]:
    """Valid `kind` records and their line numbers; the first bad line stops with path:line."""
    rows, lines = [], []
    for lineno, row in iter_jsonl(path):
        problem = R.check_record(row, kind)
        if problem is None and kind == "interaction" and (isinstance(row.get(R.TS), bool)
                                                          or not isinstance(row.get(R.TS), int)):
            problem = f"field 'ts' must be an integer (unix seconds), got {json.dumps(row.get(R.TS))[:40]}"
        if problem:
            raise RecordError(f"{path}:{lineno}: {problem}")
        rows.append(row)
        lines.append(lineno)
    return rows, lines


def sample_items(path: Path) -> pd.DataFrame:
    """Items without their whole-period stats; fields category and price band."""
    rows, lines = read_checked(path, "item")
    ids = [str(r[R.ITEM_ID]) for r in rows]
    check_unique(ids, lines, path, "item_id")
    prices = [(r.get(R.ATTRIBUTES) or {}).get("unit_price") for r in rows]
    return pd.DataFrame({
        R.NAME: [r[R.NAME] for r in rows], R.ORIGINAL_NAME: [r.get(R.ORIGINAL_NAME, "") for r in rows],
        R.CATEGORY: [r.get(R.CATEGORY) or "" for r in rows], R.ATTRIBUTES: [r.get(R.ATTRIBUTES) or {} for r in rows],
        "price_band": price_band(prices),
    }, index=pd.Index(ids, name=R.ITEM_ID))


def sample_users(path: Path) -> pd.DataFrame:
    """Users without their whole-period histories; field country."""
    rows, lines = read_checked(path, "user")
    ids = [str(r[R.USER_ID]) for r in rows]
    check_unique(ids, lines, path, "user_id")
    profiles = [r.get(R.PROFILE) or {} for r in rows]
    return pd.DataFrame({R.PROFILE: profiles, "country": [str(p.get("country", "")) for p in profiles]},
                        index=pd.Index(ids, name=R.USER_ID))


def load_sample(config: PrepareConfig, log: Log) -> RawData:
    """Read the three files of data/sample, check every line and every id reference."""
    paths = {n: config.raw / f"{n}.jsonl" for n in ("items", "users", "interactions")}
    items, users = sample_items(paths["items"]), sample_users(paths["users"])
    rows, lines = read_checked(paths["interactions"], "interaction")
    events = pd.DataFrame({R.USER_ID: [str(r[R.USER_ID]) for r in rows], R.ITEM_ID: [str(r[R.ITEM_ID]) for r in rows],
                           R.LABEL: np.array([r[R.LABEL] for r in rows], dtype=np.int8),
                           R.TS: np.array([r[R.TS] for r in rows], dtype=np.int64)})
    for column, known, name in ((R.USER_ID, users.index, "users"), (R.ITEM_ID, items.index, "items")):
        check_known(events[column].to_numpy(), known, lines, paths["interactions"], column, paths[name].name)
    log(f"{paths['interactions']}: {len(events):,} interactions")
    build = config.raw / "build.json"
    notes = {"build": json.loads(build.read_text(encoding="utf-8")).get("args")} if build.is_file() else {}
    protocol = {
        "click_rule": "a purchase: label 1 rows of interactions.jsonl (each basket line of a sampled item)",
        "sample_rule": "every row of interactions.jsonl is one sample",
        "negative_rule": "as built by scripts/build_sample.py (data/sample/README.md): per basket, negatives per "
                         "positive drawn without replacement from the items sold in the same calendar month, "
                         "weighted by that month's basket count, never an item the user bought at any time in "
                         "the data; an item the user buys later is therefore never a negative; AUC on this set "
                         "ranks purchases against sampled items, it is not impression AUC",
        "dropped": "users.jsonl histories and items.jsonl stats of the input (whole period) are not used",
        "caveat": "because a negative is never an item the user ever bought, a target already in the user's "
                  "history is always a positive here; target attention (DIN) can exploit this, so AUC on this "
                  "set is optimistic; use it for demos and tests, not for claims",
    }
    return RawData(items=items, users=users, events=events,
                   fields={"user": ["country"], "item": [R.CATEGORY, "price_band"]}, protocol=protocol,
                   sources=list(paths.values()), title="Online Retail sample (data/sample)", notes=notes)
