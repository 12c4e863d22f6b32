"""A user's snapshot time (issue 24): when the history of their users.jsonl record was taken.

`ctr prepare` writes each user's record as of one time, the record's `history_as_of`: T0 (card.json
`users_snapshot_ts`), or with --late-snapshot, for a user with no click up to T0, the end of the validation split
(`users_late_snapshot_ts`), or with --snapshot-clicks K the time of the user's own K-th click (card
`users_snapshot_clicks`; a user with fewer clicks has no record). A vector made from a record (a user table) may
feed only that user's rows with ts after that time; `ctr train` zeroes it on every earlier row, and a user
without a record has no snapshot (NEVER). A user table keeps each user's time beside their vector
(ground.vectors) and the distinct times in its embed_config.json (`users_snapshot_times`). Checked where the
table is made and again by `ctr train` (`check_times`): with one shared time (T0, late), each time must be one of
the card's; with per-user times, users.jsonl's times must have the card's digest and a table's time of each user
must be that user's time in users.jsonl.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from ground import records as R
from ground.errors import ConfigError, RecordError

SNAPSHOT_KEY = "users_snapshot_ts"  # card.json: T0 (older user tables' embed_config.json: the one time of all users)
LATE_SNAPSHOT_KEY = "users_late_snapshot_ts"  # card.json, --late-snapshot only: the time of users with no click by T0
CLICKS_KEY = "users_snapshot_clicks"  # card.json, --snapshot-clicks K: a user's time is their K-th click's
DIGEST_KEY = "users_snapshot_digest"  # card.json, --snapshot-clicks: times_digest of users.jsonl's times
SNAPSHOT_TIMES_KEY = "users_snapshot_times"  # a user table's embed_config.json: the distinct times of its users
CARD_FILE, USERS_FILE = "card.json", "users.jsonl"
NEVER = 2**63 - 1  # the time of a user without a snapshot (no record): after every row, so it feeds none


def times_digest(times: Mapping[str, int]) -> str:
    """sha256 of the user id -> snapshot time pairs, in user id order (what a --snapshot-clicks card keeps)."""
    lines = sorted(f"{user}\t{int(t)}\n" for user, t in times.items())
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def card_times(card: dict, where: str | Path) -> list[int]:
    """The snapshot times a prepared folder's card allows, in order: T0, then the late time (--late-snapshot).

    A --snapshot-clicks card has no shared time: its users' times are checked by `check_times`."""
    t0 = card.get(SNAPSHOT_KEY)
    if not isinstance(t0, int):
        raise ConfigError(f"{where}: no {SNAPSHOT_KEY}; rerun `ctr prepare` (an older users.jsonl holds train clicks "
                          "later than the rows it would feed: a label leak)")
    late = card.get(LATE_SNAPSHOT_KEY)
    return [t0] + ([late] if isinstance(late, int) and late != t0 else [])


def record_times(rows: list[tuple[int, dict]], path: str | Path) -> dict[str, int] | None:
    """user id -> the snapshot time of their record, from (line number, user record) pairs of `path`.

    None when no record carries one (a users.jsonl `ctr prepare` did not write, such as data/sample's); some with
    and some without is an error at the first without. No records at all ({}): --snapshot-clicks when no user has
    K clicks yet."""
    missing = [lineno for lineno, row in rows if row.get(R.HISTORY_AS_OF) is None]
    if rows and len(missing) == len(rows):
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
    content = json.loads(card.read_text(encoding="utf-8"))
    if CLICKS_KEY in content:  # one time per user: the records' times as a whole must be the card's
        if times_digest(times) != content.get(DIGEST_KEY):
            raise RecordError(f"{path}: its users' snapshot times are not the ones {card} records (their "
                              f"K-th clicks, K = {content[CLICKS_KEY]}: {DIGEST_KEY}); rerun `ctr prepare`")
        return times
    allowed = card_times(content, card)
    for lineno, row in rows:
        if row[R.HISTORY_AS_OF] not in allowed:
            raise RecordError(f"{path}:{lineno}: {R.HISTORY_AS_OF} {row[R.HISTORY_AS_OF]} is not one of the snapshot "
                              f"times of {card} ({', '.join(map(str, allowed))}); rerun `ctr prepare`")
    return times


def check_times(times: Mapping[str, int], card: dict, folder: Path, source: str | Path) -> None:
    """Refuse user times (of a user table, or of users.jsonl) made from another snapshot than the prepared folder's.

    One shared time (T0, late): each time must be one of the card's. --snapshot-clicks: each user's time must be
    theirs in the folder's users.jsonl, whose times the card's digest vouches for (a table made from another
    folder or K gives some user another time, or a time to a user without a record)."""
    if CLICKS_KEY not in card:
        allowed = card_times(card, folder / CARD_FILE)
        other = sorted(set(times.values()) - set(allowed))
        if other:
            raise ConfigError(f"{source}: made from a users.jsonl snapshot at {other[0]}, not one of this folder's "
                              f"snapshot times ({', '.join(map(str, allowed))}; T0 first); rebuild it from "
                              f"{folder / USERS_FILE}")
        return
    reference = users_file_times(folder / USERS_FILE)
    if reference is None:
        raise ConfigError(f"{folder / USERS_FILE}: no snapshot time recorded for its users; rerun `ctr prepare`")
    for user, t in times.items():
        if reference.get(user) != t:
            raise ConfigError(f"{source}: user {user}'s snapshot time {t} is not theirs in {folder / USERS_FILE} "
                              f"({reference.get(user, 'no record')}: their K-th click, K = {card[CLICKS_KEY]}); rebuild it "
                              "from that users.jsonl")


def times_summary(times: dict[str, int] | None) -> dict:
    """What a user table's embed_config.json says of its users' times: {users_snapshot_times: [...]} or {}."""
    return {SNAPSHOT_TIMES_KEY: sorted(set(times.values()))} if times else {}
