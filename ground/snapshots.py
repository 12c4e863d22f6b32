"""A user's snapshot time (issue 24): when the history of their users.jsonl record was taken.

`ctr prepare` writes each user's record as of one time, the record's `history_as_of`: T0 (card.json
`users_snapshot_ts`), or with --late-snapshot, for a user with no click up to T0, the end of the validation split
(`users_late_snapshot_ts`). A vector made from a record (a user table) may feed only that user's rows with ts
after that time; `ctr train` zeroes it on every earlier row. A user table keeps each user's time beside their
vector (ground.vectors) and the distinct times in its embed_config.json (`users_snapshot_times`); a time that is
not one of the prepared card's is refused, where the table is made and again by `ctr train`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ground import records as R
from ground.errors import ConfigError, RecordError

SNAPSHOT_KEY = "users_snapshot_ts"  # card.json: T0 (older user tables' embed_config.json: the one time of all users)
LATE_SNAPSHOT_KEY = "users_late_snapshot_ts"  # card.json, --late-snapshot only: the time of users with no click by T0
SNAPSHOT_TIMES_KEY = "users_snapshot_times"  # a user table's embed_config.json: the distinct times of its users
CARD_FILE = "card.json"


def card_times(card: dict, where: str | Path) -> list[int]:
    """The snapshot times a prepared folder's card allows, in order: T0, then the late time (--late-snapshot)."""
    t0 = card.get(SNAPSHOT_KEY)
    if not isinstance(t0, int):
        raise ConfigError(f"{where}: no {SNAPSHOT_KEY}; rerun `ctr prepare` (an older users.jsonl holds train clicks "
                          "later than the rows it would feed: a label leak)")
    late = card.get(LATE_SNAPSHOT_KEY)
    return [t0] + ([late] if isinstance(late, int) and late != t0 else [])


def record_times(rows: list[tuple[int, dict]], path: str | Path) -> dict[str, int] | None:
    """user id -> the snapshot time of their record, from (line number, user record) pairs of `path`.

    None when no record carries one (a users.jsonl `ctr prepare` did not write, such as data/sample's); some with
    and some without is an error at the first without."""
    missing = [lineno for lineno, row in rows if row.get(R.HISTORY_AS_OF) is None]
    if len(missing) == len(rows):
        return None
    if missing:
        raise RecordError(f"{path}:{missing[0]}: no {R.HISTORY_AS_OF!r}, while other records have one")
    return {R.record_id(row): int(row[R.HISTORY_AS_OF]) for _, row in rows}


def users_file_times(path: str | Path, rows: list[tuple[int, dict]] | None = None) -> dict[str, int] | None:
    """The snapshot time of each record of a users.jsonl (None when it records none), checked against the
    card.json beside it when there is one: a record whose time is not one of the card's raises RecordError."""
    rows = R.read_numbered_records(path, "user") if rows is None else rows
    times = record_times(rows, path)
    card = Path(path).parent / CARD_FILE
    if times is None or not card.exists():
        return times
    allowed = card_times(json.loads(card.read_text(encoding="utf-8")), card)
    for lineno, row in rows:
        if row[R.HISTORY_AS_OF] not in allowed:
            raise RecordError(f"{path}:{lineno}: {R.HISTORY_AS_OF} {row[R.HISTORY_AS_OF]} is not one of the snapshot "
                              f"times of {card} ({', '.join(map(str, allowed))}); rerun `ctr prepare`")
    return times


def times_summary(times: dict[str, int] | None) -> dict:
    """What a user table's embed_config.json says of its users' times: {users_snapshot_times: [...]} or {}."""
    return {SNAPSHOT_TIMES_KEY: sorted(set(times.values()))} if times else {}
