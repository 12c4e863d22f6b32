"""User tables and their snapshot times: which rows each user's vector may feed (issue 24, ground.snapshots).

A user table (`distill embed --users`, `write_user_mean_table`, bench/ctr_vectors.py's controls) is built from
users.jsonl, each user's record a snapshot at that user's time; `ctr train --user-source table` feeds a user's
vector to their rows with ts after that time only (`user_times`, applied in ctr.knowledge.MSD).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ctr.data import Prepared
from ctr.encoders import EMBED_CONFIG, read_embed_config
from ground import records as R
from ground.errors import ConfigError, RecordError
from ground.files import write_json
from ground.snapshots import (NEVER, SNAPSHOT_KEY, check_times, record_times, times_summary,
                              users_file_times)
from ground.vectors import ITEM_TABLE, USER_TABLE, read_table, read_times, write_table


def write_user_mean_table(knowledge: str | Path, users: str | Path) -> int:
    """Write knowledge/user_embeddings.parquet: each user's vector = the mean of the item vectors of their
    users.jsonl history, a snapshot at their time (`history_as_of`), kept beside the vector; record the rule and
    the times in embed_config.json.

    Records without `history_as_of` (a users.jsonl of an older `ctr prepare`, holding every train click) are
    refused: their vectors hold train clicks later than the rows they would feed, labels included; so is a time
    that is not the card's beside users.jsonl (ground.snapshots). Users without a known item get no row; no such
    user at all, no table. Returns the number of users written.
    """
    knowledge, users = Path(knowledge), Path(users)
    ids, vectors = read_table(knowledge / ITEM_TABLE)
    row = {rid: i for i, rid in enumerate(ids)}
    records = R.read_numbered_records(users, "user")
    times = users_file_times(users, records)
    if times is None:
        raise RecordError(f"{users}: no record has {R.HISTORY_AS_OF!r} (the snapshot time of its history); rerun "
                          "`ctr prepare`: an older users.jsonl holds later train clicks (a label leak)")
    names, means = [], []
    for _, user in records:
        rows = [row[str(i)] for i in user[R.HISTORY] if str(i) in row]
        if rows:
            names.append(str(user[R.USER_ID]))
            means.append(vectors[rows].mean(axis=0))
    if names:
        write_table(knowledge / USER_TABLE, names, np.asarray(means, np.float32), as_of=[times[name] for name in names])
    else:  # no table, as `distill embed` writes none (an empty one would read back without its dimension)
        (knowledge / USER_TABLE).unlink(missing_ok=True)
    summary = read_embed_config(knowledge)
    summary.pop(SNAPSHOT_KEY, None)  # an earlier run's single time
    summary["users_vector"] = ("mean of the item vectors of the user's clicks up to their snapshot time "
                               f"({users}; ctr.user_table.write_user_mean_table)")
    summary |= times_summary(times)
    summary.setdefault("counts", {})["users"] = len(names)
    write_json(knowledge / EMBED_CONFIG, summary)
    return len(names)


def table_user_times(knowledge: Path) -> dict[str, int] | None:
    """user id -> the snapshot time of their vector in the folder's user table; None when it records none.

    From the table's history_as_of column; for tables written before it, the one time in embed_config.json
    (`users_snapshot_ts`: every user's) or the records of the users.jsonl `distill embed --users` read. No user
    table ({}): no user has a vector (`distill embed` writes none for a users.jsonl without records, as
    --snapshot-clicks leaves it when no user has K clicks).
    """
    if not (knowledge / USER_TABLE).exists():
        return {}
    times = read_times(knowledge / USER_TABLE)
    if times is not None:
        return times
    embed = read_embed_config(knowledge)
    if isinstance(embed.get(SNAPSHOT_KEY), int):
        return dict.fromkeys(read_table(knowledge / USER_TABLE)[0], embed[SNAPSHOT_KEY])
    if embed.get("users") and Path(embed["users"]).exists():
        return record_times(R.read_numbered_records(embed["users"], "user"), embed["users"])
    return None


def user_times(knowledge: Path | None, data: Prepared) -> torch.Tensor:
    """(U + 1,) int64 per user key: the snapshot time of the user's vector, which feeds rows with ts after it only.

    The times come from the knowledge folder's user table, or (knowledge None: the LoRA student reads users.jsonl
    itself) from the prepared users.jsonl, checked against the prepared folder (ground.snapshots.check_times).
    Refused: a card without a snapshot rule, a table without times, or one made from another snapshot. A user
    without a record or vector, and key 0, get NEVER: no snapshot, so no row of theirs is fed.
    """
    source = data.folder / "users.jsonl" if knowledge is None else knowledge / USER_TABLE
    times = users_file_times(source) if knowledge is None else table_user_times(knowledge)
    if times is None:
        raise ConfigError(f"{source}: no snapshot time recorded for its users; rebuild it from "
                          f"{data.folder / 'users.jsonl'}")
    check_times(times, data.card, data.folder, source)
    return torch.tensor([NEVER, *(times.get(u, NEVER) for u in data.user_ids)], dtype=torch.long)


def train_window_users(times: torch.Tensor, data: Prepared) -> torch.Tensor:
    """(U + 1,) bool: the users whose snapshot (user_times) is inside the train window, whose vectors alone give
    the user table's z-score statistics: a later snapshot (--late-snapshot, a K-th click after train) holds events
    after train rows that the statistics scale too. With one T0 these are the T0 users."""
    return times <= int(data.split("train")[R.TS].max())
