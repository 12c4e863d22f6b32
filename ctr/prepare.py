"""`ctr prepare`: a raw dataset -> items.jsonl, users.jsonl, samples.parquet and card.json.

Each dataset has a loader (ctr/prepare_movielens.py, ctr/prepare_retail.py, ctr/prepare_sample.py) that
reads and validates everything into a `RawData`; the steps after it are shared: a global time split,
per-sample behaviour histories, train-only statistics, the card, and one atomic write of the folder.
docs/ctr_data.md states the protocol; the contract with the trainer is in the same file.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ctr import prepare_rechorus as RC
from ctr.prepare_movielens import load_ml1m, load_ml100k
from ctr.prepare_retail import load_retail
from ctr.prepare_sample import load_sample
from ctr.raw import Log, PrepareConfig, RawData
from ground.errors import ConfigError
from ground.files import atomic_folder, write_json, write_jsonl
from ground import records as R
from ground.snapshots import CLICKS_KEY, DIGEST_KEY, LATE_SNAPSHOT_KEY, SNAPSHOT_KEY, times_digest

FORMAT = "ctr-prepare/1"  # card.json key that marks a folder this command wrote (and may replace)
SPLITS = ("train", "val", "test")
SPLIT, HISTORY_COL = "split", R.HISTORY
SAMPLES_FILE, CARD_FILE = "samples.parquet", "card.json"



# --- checks of input rows (each stops at the first bad row with path:line) ----------



# --- the output folder -------------------------------------------------------

def check_output(output: Path) -> None:
    """Refuse a path that is a file, or a non-empty folder that an earlier `ctr prepare` did not write."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output}: exists and is not a folder")
    if not output.exists() or not any(output.iterdir()):
        return
    card = output / CARD_FILE
    try:
        ours = json.loads(card.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise ConfigError(f"{output}: not empty and not a `ctr prepare` output (no {CARD_FILE} with format "
                         f"{FORMAT!r}); choose an empty or new folder")


# --- split and histories (pure) ------------------------------------------------

def time_cutoffs(ts: np.ndarray, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """The last ts of train and of val: the ts at the 80% (90%) rank of all samples; a ts is never split."""
    s = np.sort(ts)
    n = len(s)
    ranks = [max(int(round(n * fractions[0])) - 1, 0), max(int(round(n * (fractions[0] + fractions[1]))) - 1, 0)]
    return int(s[ranks[0]]), int(s[ranks[1]])


def assign_splits(ts: np.ndarray, cutoffs: tuple[int, int]) -> np.ndarray:
    """'train' up to the first cut-off (inclusive), 'val' up to the second, 'test' after."""
    return np.array(SPLITS, dtype=object)[(ts > cutoffs[0]).astype(int) + (ts > cutoffs[1])]


def history_slices(user: np.ndarray, ts: np.ndarray, click: np.ndarray,
                   max_history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample, the slice [start, end) of `clicks` (row numbers sorted by user, ts, row) holding that user's
    clicks with ts strictly before the sample's, the last max_history of them.

    user: (N,) int codes, ts: (N,) int64, click: (N,) bool. Returns clicks (C,), start (N,), end (N,).
    One sorted key user * span + ts makes this two binary searches instead of a scan per row.
    """
    t0 = int(ts.min()) if len(ts) else 0
    span = int(ts.max()) - t0 + 2 if len(ts) else 1
    if (int(user.max()) + 1 if len(user) else 0) * span >= 2**62:
        raise ConfigError("timestamps span too wide to key by user and time")
    key = user.astype(np.int64) * span + (ts - t0)
    rows = np.flatnonzero(click)
    clicks = rows[np.lexsort((rows, ts[rows], user[rows]))]
    ckey = key[clicks]
    end = np.searchsorted(ckey, key, side="left")  # first click of this user at ts >= the sample's ts
    first = np.searchsorted(ckey, user.astype(np.int64) * span, side="left")  # the user's first click
    return clicks, np.maximum(first, end - max_history), end


def gather_slices(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (N+1,) and flat positions (sum(end-start),) listing start[i]..end[i]-1 for each i in order."""
    lengths = end - start
    offsets = np.zeros(len(start) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - start, lengths)
    return offsets, flat


def history_array(events: pd.DataFrame, max_history: int, every_rating: bool = False) -> pa.ListArray:
    """list<string> per event: the user's clicked (every_rating: rated) item ids strictly before its ts, oldest first,
    the last max_history."""
    user, _ = pd.factorize(events[R.USER_ID])
    item, item_ids = pd.factorize(events[R.ITEM_ID])
    counted = np.ones(len(events), bool) if every_rating else events[R.LABEL].to_numpy() == 1
    clicks, start, end = history_slices(user, events[R.TS].to_numpy(np.int64), counted, max_history)
    offsets, flat = gather_slices(start, end)
    values = pa.array(np.asarray(item_ids, dtype=object), pa.string()).take(pa.array(item[clicks][flat]))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


# --- records and card ------------------------------------------------------------

def item_records(items: pd.DataFrame, samples: pd.DataFrame) -> list[dict]:
    """kgen item records of the items that occur in any split; stats counted on train samples only."""
    train = samples[samples[SPLIT] == "train"]
    exposures = train.groupby(R.ITEM_ID).size()
    clicks = train.groupby(R.ITEM_ID)[R.LABEL].sum()
    used = items.loc[items.index.isin(samples[R.ITEM_ID].unique())]
    rows = []
    for item_id, row in used.iterrows():
        rec = {R.ITEM_ID: item_id, R.NAME: row[R.NAME]}
        for key in (R.ORIGINAL_NAME, R.CATEGORY, R.ATTRIBUTES):
            if key in row and isinstance(row[key], (str, dict)) and row[key]:
                rec[key] = row[key]
        rec[R.STATS] = {R.EXPOSURES: int(exposures.get(item_id, 0)), R.CLICKS: int(clicks.get(item_id, 0))}
        rows.append(rec)
    return rows


def snapshot_ts(ts: np.ndarray, cutoffs: tuple[int, int], fraction: float) -> int:
    """T0 of users.jsonl: first ts + fraction * (train last ts - first ts), a timestamp inside the train window."""
    first = int(ts.min())
    return first + int(fraction * (cutoffs[0] - first))


def user_snapshot_times(samples: pd.DataFrame, t0: int, late: int | None) -> pd.Series:
    """user id -> the time of their users.jsonl snapshot: T0, or (late given) `late` for a user with no click up to T0.

    Decided by the events up to T0 alone: whether a row after T0 gets a user vector must not depend on a later
    event: a user with no click by `late` either gets `late` (and an empty history), not T0.
    """
    users = pd.Index(samples[R.USER_ID].unique())
    if late is None:
        return pd.Series(t0, index=users, dtype=np.int64)
    early = samples.loc[(samples[R.TS].to_numpy() <= t0) & (samples[R.LABEL].to_numpy() == 1), R.USER_ID].unique()
    return pd.Series(np.where(users.isin(early), t0, late), index=users, dtype=np.int64)


def kth_click_times(samples: pd.DataFrame, k: int) -> pd.Series:
    """user id -> the ts of their k-th click, in time order over all splits, for the users with at least k clicks.

    A user with fewer gets no time, hence no users.jsonl record and no vector. Causal: a row gets a vector iff its
    user's k-th click came before it, which earlier events alone decide. That a user never reaches k is a later
    fact, but it only withholds a vector from rows before a k-th click, which get none anyway (ctr.user_table gives
    a user without a record NEVER). A record with a time after every row would do the same at the cost of teacher
    and encoder work for a vector that feeds nothing, and `ctr serve`, for which a request comes after every
    snapshot, would feed it where `ctr eval` does not.
    """
    clicks = samples[samples[R.LABEL].to_numpy() == 1]  # in time order
    kth = clicks[clicks.groupby(R.USER_ID, sort=False).cumcount().to_numpy() == k - 1]
    return pd.Series(kth[R.TS].to_numpy(np.int64), index=pd.Index(kth[R.USER_ID]), dtype=np.int64)


def user_records(users: pd.DataFrame, samples: pd.DataFrame, max_history: int, as_of: pd.Series) -> list[dict]:
    """kgen user records of the users with a snapshot time (`as_of`, user id -> time); history = their clicks with
    ts <= that time, oldest first, the last max_history; `history_as_of` says which time on each record.

    A snapshot, never "all train clicks": a table built from it may feed only the user's rows after that time, so
    no row's user input holds its own label or a later event (the train-clicks table did: issue 21, point 1).
    """
    clicks = samples[samples[R.LABEL].to_numpy() == 1]  # in time order
    past = clicks[clicks[R.TS].to_numpy() <= clicks[R.USER_ID].map(as_of).to_numpy()]
    history = past.groupby(R.USER_ID, sort=False)[R.ITEM_ID].agg(list)
    used = users.loc[users.index.isin(as_of.index)]
    return [{R.USER_ID: user_id, R.HISTORY: history.get(user_id, [])[-max_history:], R.PROFILE: profile,
             R.HISTORY_AS_OF: int(as_of[user_id])}
            for user_id, profile in used[R.PROFILE].items()]


def split_counts(samples: pd.DataFrame) -> dict[str, dict]:
    """Samples, positives, positive rate, users, items and time range per split, plus ids unseen in train."""
    train = samples[SPLIT].to_numpy() == "train"
    seen = {c: samples[c].isin(samples.loc[train, c].unique()).to_numpy() for c in (R.USER_ID, R.ITEM_ID)}
    out = {}
    for name in SPLITS:
        mask = samples[SPLIT].to_numpy() == name
        part = samples[mask]
        out[name] = {
            "samples": len(part), "positives": int(part[R.LABEL].sum()),
            "positive_rate": round(float(part[R.LABEL].mean()), 4) if len(part) else None,
            "users": part[R.USER_ID].nunique(), "items": part[R.ITEM_ID].nunique(),
            "first_ts": int(part[R.TS].min()) if len(part) else None,
            "last_ts": int(part[R.TS].max()) if len(part) else None,
        }
        if name != "train":
            out[name] |= {"users_not_in_train": part.loc[~seen[R.USER_ID][mask], R.USER_ID].nunique(),
                          "items_not_in_train": part.loc[~seen[R.ITEM_ID][mask], R.ITEM_ID].nunique(),
                          "samples_with_item_not_in_train": int((~seen[R.ITEM_ID][mask]).sum())}
    return out


def length_quantiles(lengths: np.ndarray) -> dict[str, float]:
    """min, p10, p25, p50, p75, p90, max and mean of the history lengths."""
    if not len(lengths):
        return {}
    qs = {"min": 0, "p10": 10, "p25": 25, "p50": 50, "p75": 75, "p90": 90, "max": 100}
    return {k: float(np.percentile(lengths, q)) for k, q in qs.items()} | {"mean": round(float(lengths.mean()), 2)}


def file_source(path: Path) -> dict:
    """path, sha256 and size of one input file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def _iso(ts: int) -> str:
    return pd.Timestamp(ts, unit="s").isoformat()


def split_rule(config: PrepareConfig, cutoffs: tuple[int, int]) -> str:
    """The card's sentence on how the samples were split."""
    fr = [round(100 * f) for f in config.split_fractions]
    at = (f"train ts <= {cutoffs[0]} = {_iso(cutoffs[0])}, val ts <= {cutoffs[1]} = {_iso(cutoffs[1])}")
    how = (f"global time cut-off at the given timestamps ({at})" if config.split_ts else
           f"global time cut-off: the samples sorted by ts, train = the first {fr[0]}%, val = the next {fr[1]}%, "
           f"test = the rest, extended so that one timestamp never falls in two splits ({at})")
    return how + "; one split for every model; no future behaviour reaches a training row"


def users_rule(config: PrepareConfig, t0: int, late: int | None) -> str:
    """The card's sentence on what users.jsonl holds and which rows a vector built from it may feed."""
    head = (f"users.jsonl is a snapshot at T0 = {t0} = {_iso(t0)} (first ts + {config.user_snapshot} x the train "
            "span): each user's clicks with ts <= T0, the last max_history.")
    tail = ("may feed only rows with ts > T0 (ctr train gives earlier rows the zero vector); a sample's own history "
            "is the leak-free user input for every row")
    if late is None:
        return f"{head} A user vector built from it {tail}"
    return (f"{head} With --late-snapshot, a user with no click up to T0 gets their snapshot at {late} = {_iso(late)} "
            "(the last val ts) instead: their clicks with ts <= that, an empty history for a user with no click by "
            "then (a vector of theirs is their profile's alone, or none). Each record's history_as_of is its time, "
            f"and a user vector built from a record {tail.replace('T0', 'that time')}")


def clicks_rule(k: int) -> str:
    """The card's sentence on users.jsonl with --snapshot-clicks k."""
    return (f"users.jsonl holds a snapshot of each user at their own K-th click, K = {k} (time order over all "
            "splits; --snapshot-clicks): their clicks with ts <= its ts (those in the same second included), the last "
            "max_history; history_as_of is that time. A user vector built from a record may feed only that user's "
            "rows with ts > that time (ctr train gives earlier rows the zero vector), on train, val and test alike; "
            f"a sample's own history is the leak-free user input for every row. A user with fewer than {k} clicks "
            f"has no record, hence no vector: a row gets one only after its user's K-th click, an earlier event. "
            f"{DIGEST_KEY} digests the records' user -> time pairs; users.jsonl and user tables are checked "
            "against it (ground.snapshots)")


def user_snapshots(config: PrepareConfig, samples: pd.DataFrame,
                   cutoffs: tuple[int, int]) -> tuple[pd.Series, dict, str]:
    """Each user's snapshot time (user id -> ts; a user without one gets no record), the card's keys that
    ground.snapshots checks users.jsonl and user tables against, and the card's users_rule sentence."""
    if config.snapshot_clicks:
        times = kth_click_times(samples, config.snapshot_clicks)
        keys = {CLICKS_KEY: config.snapshot_clicks, DIGEST_KEY: times_digest(times.to_dict())}
        return times, keys, clicks_rule(config.snapshot_clicks)
    t0 = snapshot_ts(samples[R.TS].to_numpy(), cutoffs, config.user_snapshot)
    late = cutoffs[1] if config.late_snapshot else None
    keys = {SNAPSHOT_KEY: t0, **({LATE_SNAPSHOT_KEY: late} if late is not None else {})}
    return user_snapshot_times(samples, t0, late), keys, users_rule(config, t0, late)


def build_card(raw: RawData, config: PrepareConfig, samples: pd.DataFrame, cutoffs: tuple[int, int],
               lengths: np.ndarray, snapshot: dict, rule: str) -> dict:
    """card.json: protocol, fields, counts per split, history lengths, sources and config."""
    protocol = dict(raw.protocol) | {
        "history_rule": f"the user's {'rated' if config.history_of == 'ratings' else 'clicked'} items with ts "
                        "strictly before the sample's ts (never the sample itself, a later item or one in the same "
                        "second), oldest first, the last max_history kept; earlier val/test events count for later "
                        "val/test samples (they are in the past then)",
        "max_history": config.max_history,
        "split_rule": split_rule(config, cutoffs),
        "unseen_rule": "users and items that first appear after the train cut-off have no train statistics and "
                       "are unknown (OOV) to train-only vocabularies; their rows are kept",
        "train_only": "items.jsonl stats use the train split only",
        "users_rule": rule,
        "seed": config.seed,
    }
    return {
        "format": FORMAT, "dataset": config.dataset, "title": raw.title, "protocol": protocol,
        "fields": raw.fields, "max_history": config.max_history,
        "splits": split_counts(samples), "history_length_quantiles": length_quantiles(lengths),
        "cutoffs": {"train_last_ts": cutoffs[0], "val_last_ts": cutoffs[1]}, **snapshot,
        "loader": raw.notes, "sources": [file_source(p) for p in raw.sources], "config": config.relevant(),
    }


# --- the whole step --------------------------------------------------------------

def build_samples(raw: RawData, config: PrepareConfig) -> tuple[pd.DataFrame, pa.Table, tuple[int, int]]:
    """Events in time order with split and fields; the same as an Arrow table with the history column."""
    if raw.events.empty:
        raise ConfigError(f"{config.raw}: no samples left to prepare (see --max-user / --max-users)")
    events = raw.events.reset_index(drop=True)
    events = events.iloc[np.argsort(events[R.TS].to_numpy(), kind="stable")].reset_index(drop=True)
    rechorus = config.protocol == "rechorus"
    if rechorus:
        before = len(events)
        events = RC.five_core(events).reset_index(drop=True)
        raw.notes["five_core_rows_dropped"] = before - len(events)
        if events.empty:
            raise ConfigError(f"{config.raw}: no user and item keep 5 clicks each (protocol rechorus's 5-core)")
    cutoffs = config.split_ts or (RC.day_span_cutoffs if rechorus else time_cutoffs)(events[R.TS].to_numpy(),
                                                                                        config.split_fractions)
    events[SPLIT] = assign_splits(events[R.TS].to_numpy(), cutoffs)
    if rechorus:
        events, dropped = RC.seen_only(events, SPLIT)
        events = events.reset_index(drop=True)
        raw.notes |= dropped
        events = pd.concat([events, RC.context(events[R.TS].to_numpy())], axis=1)
    for f in raw.fields["user"]:
        if f not in events:
            events[f] = events[R.USER_ID].map(raw.users[f]).fillna("").astype(str)
    for f in raw.fields["item"]:
        events[f] = events[R.ITEM_ID].map(raw.items[f]).fillna("").astype(str)
    history = history_array(events, config.max_history, every_rating=config.history_of == "ratings")
    columns = [R.USER_ID, R.ITEM_ID, R.LABEL, R.TS, SPLIT, *raw.fields["user"], *raw.fields["item"]]
    schema = {R.LABEL: pa.int8(), R.TS: pa.int64()}
    arrays = {c: pa.array(events[c].to_numpy(), schema.get(c, pa.string())) for c in columns}
    table = pa.table({**{c: arrays[c] for c in columns[:5]}, HISTORY_COL: history,
                      **{c: arrays[c] for c in columns[5:]}})
    return events, table, cutoffs


def prepare(config: PrepareConfig, log: Log = print) -> dict:
    """Read and validate the raw data, build everything in memory, then write the folder in one swap."""
    check_output(config.output)
    t = time.time()
    raw = load(config, log)
    log(f"read {len(raw.events):,} events, {len(raw.users):,} users, {len(raw.items):,} items "
        f"({time.time() - t:.1f}s)")
    t = time.time()
    samples, table, cutoffs = build_samples(raw, config)
    lengths = np.diff(table.column(HISTORY_COL).combine_chunks().offsets.to_numpy())
    log(f"built {len(samples):,} samples with histories ({time.time() - t:.1f}s)")
    times, snapshot, rule = user_snapshots(config, samples, cutoffs)
    items = item_records(raw.items, samples)
    users = user_records(raw.users, samples, config.max_history, times)
    card = build_card(raw, config, samples, cutoffs, lengths, snapshot, rule)
    check_output(config.output)  # it may have appeared while we were reading
    with atomic_folder(config.output) as tmp:
        write_jsonl(tmp / "items.jsonl", items)
        write_jsonl(tmp / "users.jsonl", users)
        pq.write_table(table, tmp / SAMPLES_FILE, compression="zstd")
        write_json(tmp / CARD_FILE, card)
    log(f"wrote {config.output}")
    return card


def load(config: PrepareConfig, log: Log) -> RawData:
    """The dataset's loader (imported here so each stays in its own module)."""
    if config.dataset in ("ml-1m", "ml-100k"):
        return (load_ml1m if config.dataset == "ml-1m" else load_ml100k)(config, log)
    if config.dataset == "online-retail":
        return load_retail(config, log)
    return load_sample(config, log)
