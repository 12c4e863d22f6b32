"""The annotation database: SQLite in WAL mode, one transaction per save.

Tables: items (the knowledge records), assignments (item, annotator),
annotations (one row per item and annotator, with a version number), reviews
(the reviewer's gold per item, also versioned), actions (an append-only log
of every accepted save, enforced by triggers) and meta.

A save names the version it was based on; if the stored version moved on (a
second tab, a second client) the save is refused as a conflict and nothing is
written. Every save runs inside `BEGIN IMMEDIATE`, so a process killed in the
middle leaves either the whole save or none of it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from annotate.phrases import FLAG
from ground import records as R

STATUSES: tuple[str, ...] = ("pending", "draft", "submitted")  # "pending" is saved only by undoing to the start
SAVED_STATUSES: tuple[str, ...] = STATUSES[1:]  # what an annotator or API client saves
LEGACY_FLAGGED = "flagged"  # an older status: a flag is now the doc's "flag" field, apart from the status
BUSY_TIMEOUT_S = 60.0
TABLES: frozenset[str] = frozenset({"items", "assignments", "annotations", "reviews", "actions", "meta"})


class StoreError(ValueError):
    """The --db path is not an annotation database (a folder, another program's SQLite file, not SQLite at all)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY, level TEXT NOT NULL, id TEXT NOT NULL, position INTEGER NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    key TEXT NOT NULL REFERENCES items(key), annotator TEXT NOT NULL, PRIMARY KEY (key, annotator));
CREATE TABLE IF NOT EXISTS annotations (
    key TEXT NOT NULL REFERENCES items(key), annotator TEXT NOT NULL, version INTEGER NOT NULL,
    status TEXT NOT NULL, doc TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    submitted_at TEXT, PRIMARY KEY (key, annotator));
CREATE TABLE IF NOT EXISTS reviews (
    key TEXT PRIMARY KEY REFERENCES items(key), version INTEGER NOT NULL, reviewer TEXT NOT NULL,
    doc TEXT NOT NULL, reason TEXT NOT NULL, source TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    actor TEXT NOT NULL, version INTEGER NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL,
    payload TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS actions_by_item ON actions (key, actor);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS actions_no_update BEFORE UPDATE ON actions
    BEGIN SELECT RAISE(ABORT, 'the action log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS actions_no_delete BEFORE DELETE ON actions
    BEGIN SELECT RAISE(ABORT, 'the action log is append-only'); END;
"""


def now() -> str:
    """UTC timestamp, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def item_key(record: dict) -> str:
    """The store's key of a knowledge or gold record: `level:id`."""
    return f"{record[R.LEVEL]}:{record[R.ID]}"


@dataclass(frozen=True)
class Annotation:
    """One annotator's saved work on one item."""

    key: str
    annotator: str
    version: int
    status: str
    doc: dict
    created_at: str
    updated_at: str
    submitted_at: str | None


@dataclass(frozen=True)
class Review:
    """A reviewer's gold for one item."""

    key: str
    version: int
    reviewer: str
    doc: dict
    reason: str
    source: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class SaveResult:
    """What a save did: ok with the new version, or a conflict with the stored version."""

    ok: bool
    version: int
    conflict: bool = False
    message: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything export and agreement need, read in one transaction."""

    items: list[dict]  # knowledge records in input order
    assignments: dict[str, list[str]]
    annotations: dict[str, list[Annotation]]
    reviews: dict[str, Review]


def _annotation(row: sqlite3.Row) -> Annotation:
    doc, status = json.loads(row["doc"]), row["status"]
    if status == LEGACY_FLAGGED:  # saved before flags were kept through submit: a flagged draft
        doc, status = {FLAG: "", **doc}, "draft"
    return Annotation(row["key"], row["annotator"], row["version"], status, doc,
                      row["created_at"], row["updated_at"], row["submitted_at"])


def _review(row: sqlite3.Row) -> Review:
    return Review(row["key"], row["version"], row["reviewer"], json.loads(row["doc"]), row["reason"],
                  row["source"], row["created_at"], row["updated_at"])


@contextmanager
def _opening(path: Path) -> Iterator[None]:
    """SQLite's errors on opening a file as StoreError: it is not SQLite, or cannot be opened."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreError(f"{path}: cannot open the database ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not an annotation database ({exc})") from None


class Store:
    """A handle on one annotation database; safe to share between threads (one connection per thread).

    `readonly` (export, agreement) opens the file read-only: nothing is created, converted or written.
    """

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder; --db names the database file")
        if readonly and not self.path.is_file():
            raise StoreError(f"{self.path}: no such database (run `annotate serve --input ... --db {self.path}` first)")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with _opening(self.path):
            con = self._con()
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if (readonly or tables) and not TABLES <= tables:  # never add our tables to another program's database
            raise StoreError(f"{self.path}: not an annotation database (it lacks the tables "
                             f"{', '.join(sorted(TABLES - tables))})")
        if not readonly:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    # --- connections and transactions ---------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self.readonly:  # mode=ro: SQLite itself refuses every write
            return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None, check_same_thread=False)
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.row_factory = sqlite3.Row
            if not self.readonly:
                con.execute("PRAGMA synchronous=FULL")  # an acknowledged save survives a crash, not just a kill
                con.execute("PRAGMA foreign_keys=ON")
            self._local.con = con
        return con

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at its start (BEGIN IMMEDIATE) so it never fails half-way on a lock."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        con = self._con()
        con.execute("BEGIN")
        try:
            yield con
        finally:
            con.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # --- items and assignments -----------------------------------------------
    def add_items(self, records: Iterable[dict]) -> tuple[int, int]:
        """Store records not stored yet (in input order); return (new, differing) counts.

        A record whose key is stored already keeps the stored version, so work done on it stays
        attached to what the annotator saw; `differing` counts those whose new text differs.
        """
        with self._tx() as con:
            start = con.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM items").fetchone()[0]
            added = differing = 0
            for record in records:
                body = json.dumps(record, ensure_ascii=False)
                stored = con.execute("SELECT record FROM items WHERE key = ?", (item_key(record),)).fetchone()
                if stored is not None:
                    differing += json.loads(stored["record"]) != json.loads(body)
                    continue
                con.execute("INSERT INTO items (key, level, id, position, record) VALUES (?, ?, ?, ?, ?)",
                            (item_key(record), record[R.LEVEL], str(record[R.ID]), start + added, body))
                added += 1
        return added, differing

    def items(self) -> list[dict]:
        """All knowledge records, in input order."""
        rows = self._con().execute("SELECT record FROM items ORDER BY position").fetchall()
        return [json.loads(r["record"]) for r in rows]

    def item(self, key: str) -> dict | None:
        """One knowledge record by key."""
        row = self._con().execute("SELECT record FROM items WHERE key = ?", (key,)).fetchone()
        return json.loads(row["record"]) if row else None

    def assignments(self) -> dict[str, list[str]]:
        """Annotators of each assigned item."""
        out: dict[str, list[str]] = {}
        for row in self._con().execute("SELECT key, annotator FROM assignments ORDER BY key, annotator"):
            out.setdefault(row["key"], []).append(row["annotator"])
        return out

    def assign(self, plan: dict[str, list[str]]) -> int:
        """Add (item, annotator) pairs; pairs already stored stay. Return how many were new."""
        with self._tx() as con:
            added = 0
            for key, annotators in plan.items():
                for annotator in annotators:
                    cur = con.execute("INSERT OR IGNORE INTO assignments (key, annotator) VALUES (?, ?)", (key, annotator))
                    added += cur.rowcount
        return added

    def queue(self, annotator: str) -> list[tuple[str, str]]:
        """(key, status) of an annotator's items in input order; unsaved items are pending."""
        rows = self._con().execute(
            "SELECT a.key, CASE n.status WHEN ? THEN 'draft' ELSE COALESCE(n.status, 'pending') END AS status "
            "FROM assignments a JOIN items i ON i.key = a.key "
            "LEFT JOIN annotations n ON n.key = a.key AND n.annotator = a.annotator "
            "WHERE a.annotator = ? ORDER BY i.position",
            (LEGACY_FLAGGED, annotator),
        ).fetchall()
        return [(r["key"], r["status"]) for r in rows]

    def is_assigned(self, key: str, annotator: str) -> bool:
        """Whether the item is in the annotator's queue."""
        row = self._con().execute("SELECT 1 FROM assignments WHERE key = ? AND annotator = ?", (key, annotator))
        return row.fetchone() is not None

    def get_meta(self, name: str) -> str | None:
        """A stored setting (e.g. the assignment plan's parameters)."""
        row = self._con().execute("SELECT v FROM meta WHERE k = ?", (name,)).fetchone()
        return row["v"] if row else None

    def set_meta(self, name: str, value: str) -> None:
        """Store a setting."""
        with self._tx() as con:
            con.execute("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", (name, value))

    # --- annotations ---------------------------------------------------------
    def annotation(self, key: str, annotator: str) -> Annotation | None:
        """An annotator's saved work on an item, or None when there is none yet."""
        row = self._con().execute("SELECT * FROM annotations WHERE key = ? AND annotator = ?", (key, annotator)).fetchone()
        return _annotation(row) if row else None

    def annotations(self, annotator: str | None = None, key: str | None = None) -> list[Annotation]:
        """Saved annotations, optionally of one annotator and/or one item."""
        sql, args = "SELECT * FROM annotations WHERE 1=1", []
        if annotator is not None:
            sql, args = sql + " AND annotator = ?", [*args, annotator]
        if key is not None:
            sql, args = sql + " AND key = ?", [*args, key]
        return [_annotation(r) for r in self._con().execute(sql + " ORDER BY key, annotator", args)]

    def save(self, key: str, annotator: str, doc: dict, expected_version: int, status: str = "draft",
             action: str = "save", payload: dict | None = None) -> SaveResult:
        """Save a document if the stored version is still `expected_version`; log it; all in one transaction."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        ts, body = now(), json.dumps(doc, ensure_ascii=False)
        with self._tx() as con:
            row = con.execute("SELECT version, created_at, submitted_at FROM annotations WHERE key = ? AND annotator = ?",
                              (key, annotator)).fetchone()
            current = row["version"] if row else 0
            if current != expected_version:
                return SaveResult(False, current, True, f"stored version is {current}, this edit was based on {expected_version}")
            version = current + 1
            submitted = ts if status == "submitted" else (row["submitted_at"] if row else None)
            con.execute(
                "INSERT INTO annotations (key, annotator, version, status, doc, created_at, updated_at, submitted_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key, annotator) DO UPDATE SET version = excluded.version, "
                "status = excluded.status, doc = excluded.doc, updated_at = excluded.updated_at, "
                "submitted_at = excluded.submitted_at",
                (key, annotator, version, status, body, row["created_at"] if row else ts, ts, submitted),
            )
            self._log(con, ts, "annotation", key, annotator, version, action, status, payload, body)
        return SaveResult(True, version)

    @staticmethod
    def _log(con: sqlite3.Connection, ts: str, kind: str, key: str, actor: str, version: int, action: str,
             status: str, payload: dict | None, body: str) -> None:
        con.execute(
            "INSERT INTO actions (ts, kind, key, actor, version, action, status, payload, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ts, kind, key, actor, version, action, status, json.dumps(payload or {}, ensure_ascii=False), body),
        )

    # --- reviews -------------------------------------------------------------
    def review(self, key: str) -> Review | None:
        """The reviewer's gold for an item, or None."""
        row = self._con().execute("SELECT * FROM reviews WHERE key = ?", (key,)).fetchone()
        return _review(row) if row else None

    def save_review(self, key: str, reviewer: str, doc: dict, reason: str, source: str,
                    expected_version: int) -> SaveResult:
        """Save a reviewer's gold (same version rule as `save`), logged as a review action."""
        ts, body = now(), json.dumps(doc, ensure_ascii=False)
        with self._tx() as con:
            row = con.execute("SELECT version, created_at FROM reviews WHERE key = ?", (key,)).fetchone()
            current = row["version"] if row else 0
            if current != expected_version:
                return SaveResult(False, current, True, f"stored review version is {current}, not {expected_version}")
            con.execute(
                "INSERT INTO reviews (key, version, reviewer, doc, reason, source, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET version = excluded.version, "
                "reviewer = excluded.reviewer, doc = excluded.doc, reason = excluded.reason, source = excluded.source, "
                "updated_at = excluded.updated_at",
                (key, current + 1, reviewer, body, reason, source, row["created_at"] if row else ts, ts),
            )
            self._log(con, ts, "review", key, reviewer, current + 1, "review", "reviewed",
                      {"reason": reason, "source": source}, body)
        return SaveResult(True, current + 1)

    # --- reading everything ----------------------------------------------------
    def actions(self, key: str | None = None, actor: str | None = None) -> list[dict]:
        """The action log in order, optionally for one item and/or actor."""
        sql, args = "SELECT * FROM actions WHERE 1=1", []
        if key is not None:
            sql, args = sql + " AND key = ?", [*args, key]
        if actor is not None:
            sql, args = sql + " AND actor = ?", [*args, actor]
        rows = self._con().execute(sql + " ORDER BY seq", args).fetchall()
        return [{**dict(r), "payload": json.loads(r["payload"]), "doc": json.loads(r["doc"])} for r in rows]

    def snapshot(self) -> Snapshot:
        """Items, assignments, annotations and reviews as one consistent read."""
        with self._read() as con:
            items = [json.loads(r["record"]) for r in con.execute("SELECT record FROM items ORDER BY position")]
            assignments: dict[str, list[str]] = {}
            for r in con.execute("SELECT key, annotator FROM assignments ORDER BY key, annotator"):
                assignments.setdefault(r["key"], []).append(r["annotator"])
            annotations: dict[str, list[Annotation]] = {}
            for r in con.execute("SELECT * FROM annotations ORDER BY key, annotator"):
                annotations.setdefault(r["key"], []).append(_annotation(r))
            reviews = {r["key"]: _review(r) for r in con.execute("SELECT * FROM reviews")}
        return Snapshot(items, assignments, annotations, reviews)

    def integrity(self) -> str:
        """SQLite's own check: "ok" when the file is sound."""
        return self._con().execute("PRAGMA integrity_check").fetchone()[0]
