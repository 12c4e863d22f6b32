"""The ReChorus 2.0 CTR protocol for MovieLens (`ctr prepare --protocol rechorus`), for a like-for-like number.

As ReChorus' data/MovieLens_1M/MovieLens-1M.ipynb prepares ML_1MCTR (its DIN 0.7904 / DeepFM 0.7736):
rating >= 4 is a click; 5-core on clicks (users and items with >= 5 clicks, repeated until stable); a
day-span split (day = days since the first rating's date; train = day <= 0.8 x the last day, val <= 0.9 x,
test after); val and test keep only users and items seen in train; context fields hour, weekday and period
of the day per row. Together with it `ctr prepare` puts every rating (not only clicks) in the history and
the full genre string as the genre field. Days and hours are taken in UTC (ReChorus uses its machine's
local time: a shift of a few hours at most).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ground import records as R

CONTEXT_FIELDS = ["hour", "weekday", "period"]


def five_core(events: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """The events of users and items with >= k clicks each, filtered again until no count drops below k."""
    while True:
        clicks = events[events[R.LABEL] == 1]
        users = clicks[R.USER_ID].value_counts()
        items = clicks[R.ITEM_ID].value_counts()
        keep = events[R.USER_ID].map(users).fillna(0).ge(k) & events[R.ITEM_ID].map(items).fillna(0).ge(k)
        if keep.all():
            return events
        events = events[keep]


def day_index(ts: np.ndarray) -> np.ndarray:
    """Days since the date of the first event (UTC)."""
    days = ts // 86400
    return days - days.min()


def day_span_cutoffs(ts: np.ndarray, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """(train last ts, val last ts) of the split by day: train = day <= f0 x last day, val <= (f0 + f1) x."""
    day = day_index(ts)
    last = day.max()
    bounds = (fractions[0] * last, (fractions[0] + fractions[1]) * last)
    return tuple(int(ts[day <= b].max()) if (day <= b).any() else int(ts.min()) - 1 for b in bounds)  # type: ignore[return-value]


def seen_only(events: pd.DataFrame, split: str) -> tuple[pd.DataFrame, dict]:
    """Val and test rows whose user and item are in train; the counts of rows dropped."""
    train = events[split] == "train"
    users, items = set(events.loc[train, R.USER_ID]), set(events.loc[train, R.ITEM_ID])
    keep = train | (events[R.USER_ID].isin(users) & events[R.ITEM_ID].isin(items))
    return events[keep], {"val_test_rows_dropped_unseen": int((~keep).sum())}


def period(hour: np.ndarray) -> np.ndarray:
    """ReChorus' 9 parts of the day (Britannica): 5-8, 9-10, 11-12, 13-15, 16-17, 18-19, 20-21, 22-23, 0-4."""
    bins = np.array([8, 8, 8, 8, 8, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7])
    return bins[hour]


def context(ts: np.ndarray) -> pd.DataFrame:
    """hour, weekday and period of each row (UTC) as strings, the per-row context fields."""
    stamps = pd.to_datetime(ts, unit="s")
    hour = stamps.hour.to_numpy()
    return pd.DataFrame({"hour": hour.astype(str), "weekday": stamps.day_of_week.to_numpy().astype(str),
                         "period": period(hour).astype(str)})
