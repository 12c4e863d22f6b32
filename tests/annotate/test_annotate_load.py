"""Must show 3: concurrent sessions saving hundreds of edits; the app killed in the middle of saves.

Sessions are gradio_client clients (one session each) calling the public `/save` endpoint of a
served app; two sessions of one user work on the same record, so conflicts happen and are retried.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from gradio_client import Client

from annotate.store import Store
from annotate_helpers import ACCOUNTS, IDS, knowledge_records, start_server, stop_server
from ground.files import write_jsonl

EDITS_PER_SESSION = 50
# (user, item) per session: two sessions of alice and two of bob share a record each.
SESSIONS = [("alice", IDS[0]), ("alice", IDS[0]), ("bob", IDS[0]), ("bob", IDS[0]), ("alice", IDS[1]), ("bob", IDS[2])]


@dataclass
class Session:
    """One client session: what it sent and which saves the server acknowledged."""

    number: int
    user: str
    key: str
    acked: list[tuple[str, int]] = field(default_factory=list)  # (edit id, version)
    conflicts: int = 0
    in_flight: bool = False
    error: BaseException | None = None


def edit_doc(edit: str) -> dict:
    return {"rows": [{"phrase": edit, "type": "implicit", "decision": "add", "origin": None}]}


def run_session(url: str, session: Session, limit: int | None, stop: threading.Event) -> None:
    """Save edits one after another; on a conflict, reload the version and send the same edit again."""
    try:
        client = Client(url, auth=(session.user, ACCOUNTS[session.user]), verbose=False)
        version = client.predict(session.key, api_name="/load_item")["version"]
        i = 0
        while (limit is None or i < limit) and not stop.is_set():
            edit = f"s{session.number}-e{i}"
            session.in_flight = True
            result = client.predict(session.key, edit_doc(edit), version, "draft", api_name="/save")
            session.in_flight = False
            if result["ok"]:
                session.acked.append((edit, result["version"]))
                version, i = result["version"], i + 1
            elif result["conflict"]:
                session.conflicts += 1
                version = result["version"]
            else:
                raise AssertionError(result)
    except BaseException as exc:  # recorded for the test to inspect (the killed server raises here)
        session.error = exc


def start_sessions(url: str, limit: int | None, stop: threading.Event, first: int = 0):
    sessions = [Session(first + n, user, f"item:{item}") for n, (user, item) in enumerate(SESSIONS)]
    threads = [threading.Thread(target=run_session, args=(url, s, limit, stop), daemon=True) for s in sessions]
    for t in threads:
        t.start()
    return sessions, threads


def logged_edits(db, key: str, user: str) -> list[tuple[str, int]]:
    """(edit id, version) of every save in the action log of one record."""
    return [(row["doc"]["rows"][0]["phrase"], row["version"]) for row in Store(db).actions(key=key, actor=user)]


def check_exactly_once(db, sessions: list[Session], complete: bool) -> None:
    """Every acknowledged edit is in the log once with its version; versions have no gaps."""
    store = Store(db)
    for user, key in {(s.user, s.key) for s in sessions}:
        log = logged_edits(db, key, user)
        versions = [v for _, v in log]
        assert versions == list(range(1, len(log) + 1)), f"gaps or repeats in {user}/{key}"
        assert store.annotation(key, user).version == len(log)
        counts = Counter(edit for edit, _ in log)
        assert all(n == 1 for n in counts.values()), "an edit was written twice"
        acked = [a for s in sessions if (s.user, s.key) == (user, key) for a in s.acked]
        assert set(acked) <= set(log), "an acknowledged edit is missing"
        if complete:
            assert sorted(acked, key=lambda a: a[1]) == log  # nothing but the acknowledged edits


def test_concurrent_sessions_then_a_kill_mid_save(tmp_path):
    write_jsonl(tmp_path / "knowledge.jsonl", knowledge_records())
    db = tmp_path / "gold.sqlite"
    proc, url = start_server(tmp_path / "knowledge.jsonl", db, "--per-item", "2")
    try:
        sessions, threads = start_sessions(url, EDITS_PER_SESSION, threading.Event())
        for t in threads:
            t.join(timeout=600)
        assert all(s.error is None for s in sessions), [repr(s.error) for s in sessions if s.error]
        assert sum(len(s.acked) for s in sessions) == len(SESSIONS) * EDITS_PER_SESSION  # 300 edits
        check_exactly_once(db, sessions, complete=True)

        # Now save without end and kill -9 the server while requests are in flight.
        stop = threading.Event()
        busy, threads = start_sessions(url, None, stop, first=len(SESSIONS))
        deadline = time.monotonic() + 300
        while sum(len(s.acked) for s in busy) < 40 or not any(s.in_flight for s in busy):
            assert time.monotonic() < deadline, "the sessions made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        stop.set()
        for t in threads:
            t.join(timeout=120)
    finally:
        stop_server(proc)

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    check_exactly_once(db, sessions + busy, complete=False)
    assert sum(len(s.acked) for s in busy) >= 40
    print(f"conflicts retried: {sum(s.conflicts for s in sessions + busy)}; "
          f"acknowledged before the kill: {sum(len(s.acked) for s in busy)}")
