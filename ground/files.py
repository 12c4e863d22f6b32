"""File I/O every package shares: UTF-8 lines with `path:line` errors, and writers that never leave a
partial file or folder behind (temp file, fsync, rename)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ground.errors import RecordError


def read_lines(path: str | Path, torn_tail: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, line with its newline) of a UTF-8 text file the user named, gzipped when its name ends in
    .gz; a missing file, a folder, a broken gzip file or bytes that are not UTF-8 raise RecordError. With
    `torn_tail`, a last line without its newline that ends inside a character (a kill cut the write short) is
    given without that part-character."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: no such file")
    if path.is_dir():
        raise RecordError(f"{path}: is a folder, expected a file")
    try:
        # finished record files may be kept gzipped (issue 24: knowledge records under bench/)
        fh = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except OSError as exc:
        raise RecordError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        try:
            for lineno, raw in enumerate(fh, start=1):
                if torn_tail and not raw.endswith(b"\n"):  # only the last line can lack its newline
                    raw = without_cut_character(raw)
                yield lineno, decode_line(raw, path, lineno)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise RecordError(f"{path}: not a whole gzip file ({exc})") from None


def without_cut_character(raw: bytes) -> bytes:
    """`raw` less a UTF-8 character cut short at its very end; any other bad byte is left for the decoder to name."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # a valid start of a character, and the bytes ran out
            return raw[: exc.start]
    return raw


def decode_line(raw: bytes, path: Path, lineno: int) -> str:
    """One line of a text file as str; bytes that are not UTF-8 raise RecordError with the line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    """Yield (line number, parsed value) for each non-blank line; bad JSON or bytes raise RecordError."""
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line.rstrip("\r\n"))  # without the newline, a column is on this line
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None


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

