"""The one schema module: record field names, validation and JSONL I/O.

Every record is a plain dict; its field names are spelled here once and
imported everywhere else. Readers stop at the first bad line with
`path:line: what is wrong`; writers never leave a partial file behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Literal

# --- field names -----------------------------------------------------------
ID = "id"
LEVEL = "level"
INPUT = "input"
EXPLICIT = "explicit"
IMPLICIT = "implicit"
KEY_PHRASES = "key_phrases"
RAW = "raw"
MODEL = "model"
TEMPLATE = "template"
REFERENCE_ID = "reference_id"
SAMPLING_WEIGHT = "sampling_weight"
INCLUSION_PROB = "inclusion_prob"
STATUS = "status"
ERROR = "error"
USAGE = "usage"
REQUEST_KEY = "request_key"
ASPECT = "aspect"
VALUE = "value"
RATIONALE = "rationale"
GROUNDED = "grounded"  # on an explicit entry: its value is found in the input (kgen.grounding)
LEAKED = "leaked"  # on a knowledge record: phrases of the reference example that are not in the input
LEAKED_DROPPED = "leaked_dropped"  # on a knowledge record: the leaked key phrases taken out of its key phrases
REFERENCE_TEXT = "reference_text"  # on a generation task only: the chosen example's input and answer

ITEM_ID = "item_id"
NAME = "name"
ORIGINAL_NAME = "original_name"
CATEGORY = "category"
ATTRIBUTES = "attributes"
STATS = "stats"
EXPOSURES = "exposures"
CLICKS = "clicks"
USER_ID = "user_id"
HISTORY = "history"
PROFILE = "profile"
LABEL = "label"
TS = "ts"
ANNOTATOR = "annotator"
GUIDELINE = "guideline"
STRATUM = "stratum"
INPUT_TRUNCATED = "input_truncated"  # true when a name was cut to fit the model's context (kgen.inputs)

Level = Literal["item", "user"]
Status = Literal["ok", "parse_error", "truncated", "api_error"]
Kind = Literal["item", "user", "interaction", "knowledge", "gold"]
LEVELS: tuple[str, ...] = ("item", "user")
STATUSES: tuple[str, ...] = ("ok", "parse_error", "truncated", "api_error")

# Required fields and their JSON types, per record kind.
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "item": {ITEM_ID: (str, int), NAME: str},
    "user": {USER_ID: (str, int), HISTORY: list},
    "interaction": {USER_ID: (str, int), ITEM_ID: (str, int), LABEL: int},
    "knowledge": {ID: (str, int), LEVEL: str, INPUT: str, KEY_PHRASES: list, RAW: str, STATUS: str},
    "gold": {ID: (str, int), LEVEL: str, KEY_PHRASES: list},
}
_OPTIONAL: dict[str, dict[str, type | tuple[type, ...]]] = {
    "item": {CATEGORY: str, ATTRIBUTES: dict, STATS: dict},
    "user": {PROFILE: dict},
    "interaction": {},
    "knowledge": {EXPLICIT: list, IMPLICIT: list, LEAKED: list},
    "gold": {EXPLICIT: list, IMPLICIT: list, INPUT: str},
}


class RecordError(ValueError):
    """Bad input, with the file and line it came from."""


class ConfigError(ValueError):
    """A setting out of range or of the wrong type, raised by a config's `__post_init__`."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which `pip install` adds it."""


def _type_name(t: type | tuple[type, ...]) -> str:
    types = t if isinstance(t, tuple) else (t,)
    names = {str: "string", int: "integer", list: "list", dict: "object", float: "number"}
    return " or ".join(names.get(x, x.__name__) for x in types)


def check_record(row: object, kind: Kind) -> str | None:
    """Return what is wrong with `row` as a `kind` record, or None when it is valid."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    for field, t in _REQUIRED[kind].items():
        if field not in row:
            return f"missing field '{field}' for a {kind} record"
        value = row[field]
        if isinstance(value, bool) or not isinstance(value, t):
            return f"field '{field}' must be a {_type_name(t)}, got {json.dumps(value)[:60]}"
    for field, t in _OPTIONAL[kind].items():
        if row.get(field) is not None and not isinstance(row[field], t):
            return f"field '{field}' must be a {_type_name(t)}, got {json.dumps(row[field])[:60]}"
    if LEVEL in _REQUIRED[kind] and row[LEVEL] not in LEVELS:
        return f"field 'level' must be one of {LEVELS}, got {row[LEVEL]!r}"
    if kind == "interaction" and row[LABEL] not in (0, 1):
        return f"field 'label' must be 0 or 1, got {row[LABEL]!r}"
    if kind in ("knowledge", "gold") and not all(isinstance(p, str) for p in row[KEY_PHRASES]):
        return "field 'key_phrases' must be a list of strings"
    return None


def read_lines(path: str | Path, torn_tail: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, line with its newline) of a UTF-8 text file the user named; a missing file, a folder
    or bytes that are not UTF-8 raise RecordError. With `torn_tail`, a last line without its newline that ends
    inside a character (a kill cut the write short) is given without that part-character."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: no such file")
    if path.is_dir():
        raise RecordError(f"{path}: is a folder, expected a file")
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise RecordError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if torn_tail and not raw.endswith(b"\n"):  # only the last line can lack its newline
                raw = without_cut_character(raw)
            yield lineno, decode_line(raw, path, lineno)


def without_cut_character(raw: bytes) -> bytes:
    """`raw` less a UTF-8 character cut short at its very end; any other bad byte is left for the decoder to name."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # a valid start of a character, and the bytes ran out
            return raw[: exc.start]
    return raw


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    """Yield (line number, parsed value) for each non-blank line; bad JSON or bytes raise RecordError."""
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line.rstrip("\r\n"))  # without the newline, a column is on this line
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None


def decode_line(raw: bytes, path: Path, lineno: int) -> str:
    """One line of a text file as str; bytes that are not UTF-8 raise RecordError with the line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})") from None


def read_numbered_records(path: str | Path, kind: Kind, unique: bool = False) -> list[tuple[int, dict]]:
    """(line number, record) for a whole JSONL file of `kind` records; the first bad line raises RecordError.

    With `unique`, a second record for one (level, id) (or one item/user id) is a bad line too.
    """
    rows, first_seen = [], {}
    for lineno, row in iter_jsonl(path):
        problem = check_record(row, kind)
        if problem:
            raise RecordError(f"{path}:{lineno}: {problem}")
        if unique:
            check_new_key(first_seen, (row.get(LEVEL), record_id(row)), path, lineno)
        rows.append((lineno, row))
    return rows


def read_records(path: str | Path, kind: Kind, unique: bool = False) -> list[dict]:
    """Read and validate a whole JSONL file of `kind` records; the first bad line raises RecordError."""
    return [row for _, row in read_numbered_records(path, kind, unique)]


def check_new_key(first_seen: dict[object, int], key: tuple, path: str | Path, lineno: int) -> None:
    """Note the line where `key` = (level, id) first occurs; a second occurrence raises RecordError."""
    if key in first_seen:
        raise RecordError(f"{path}:{lineno}: duplicate id {key[-1]!r} (first on line {first_seen[key]})")
    first_seen[key] = lineno


def require_rows(rows: list, path: str | Path) -> list:
    """The rows read from `path`; none at all raises RecordError (caught before any model loads)."""
    if not rows:
        raise RecordError(f"{path}: no records (the file is empty)")
    return rows


def record_id(row: dict) -> str:
    """The id of any record as a string (knowledge/gold `id`, item `item_id`, user `user_id`)."""
    for field in (ID, ITEM_ID, USER_ID):
        if field in row:
            return str(row[field])
    raise KeyError("record has no id field")


def config_dict(config: object) -> dict:
    """A dataclass config as JSON-ready values (paths, alone or in lists, become strings): the run's resolved config."""
    def plain(value: object) -> object:
        if isinstance(value, Path):
            return str(value)
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def dumps(row: dict) -> str:
    """One JSONL line (no trailing newline), UTF-8 kept readable."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _umask_mode() -> int:
    # mkstemp creates files 0600; outputs should get the usual permissions of a new file.
    return 0o666 & ~_umask()


def check_writable_file(path: str | Path) -> Path:
    """An output file path the user named; a folder there raises RecordError before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise RecordError(f"{path}: is a folder; give the path of an output file")
    return path


def check_output_folder(path: str | Path) -> Path:
    """An output folder the user named; a file there raises RecordError before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RecordError(f"{path}: is a file; give the path of an output folder")
    return path


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[str]]:
    """A text handle on a temp file beside `path`; fsynced and renamed over it on success, removed on failure."""
    path = check_writable_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise RecordError(f"{path}: cannot write here ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def folder_beside(target: str | Path) -> Iterator[Path]:
    """A new empty folder beside `target` (same file system, so it can be renamed into place); removed on failure."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    except OSError as exc:
        raise RecordError(f"{target}: cannot write here ({exc.strerror})") from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_folder(new: Path, target: Path) -> None:
    """Put folder `new` where `target` is; an old `target` (the caller checked it is ours to drop) is removed after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
        target.rename(old / "previous")
    new.rename(target)
    if old is not None:
        shutil.rmtree(old)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows atomically (temp file, fsync, rename); return how many were written."""
    n = 0
    with atomic_writer(path) as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj: object) -> None:
    """Write a JSON document atomically (configs, metrics, summaries)."""
    with atomic_writer(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2, default=str)
        fh.write("\n")


def append_line(fh: IO[str], row: dict) -> None:
    """Append one record durably: a whole line, flushed and fsynced."""
    fh.write(dumps(row) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A temp folder beside `path` to fill; on success it takes the place of `path`, on failure it is removed.

    A folder cannot be renamed over a non-empty one, so the old folder is moved aside first and removed
    after the swap: a reader sees the old or the new whole folder, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual folder mode
        old = tmp.with_name(f"{tmp.name}-old")
        if path.exists():
            path.rename(old)
        try:
            tmp.rename(path)
        except BaseException:
            if old.exists():
                old.rename(path)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
