"""Two-level cache of student vectors for serving (paper section 3.5): an in-process LRU, then Redis.

A vector is keyed by the *content* it was computed from, never by an item id alone:
`msd:<student version>:<codec>:<kind>:<hash of the text>`. A renamed item or a new
student (another version) therefore never meets a stale vector; old entries are simply
never read again and Redis' `allkeys-lru` policy evicts them.

Every vector, whether computed now, read from Redis or from the LRU, goes through the
same float16 (or int8 + scale) rounding before use, so the scores do not depend on
which level answered, nor on whether Redis was up.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

Codec = Literal["float16", "int8", "float32"]
CODECS: tuple[str, ...] = ("float16", "int8", "float32")  # float32: exact (the scores of `ctr eval`), twice float16's size
log = logging.getLogger("ctr.serve")


def encode_vectors(vectors: np.ndarray, codec: Codec) -> list[bytes]:
    """(N, D) float32 -> N blobs: float16, float32, or int8 with a float32 scale in front (max |x| maps to 127)."""
    vectors = np.asarray(vectors, np.float32).reshape(len(vectors), -1)
    if codec in ("float16", "float32"):
        return [row.tobytes() for row in vectors.astype(codec)]
    peaks = np.abs(vectors).max(axis=1, initial=0.0).astype(np.float64)  # (N,) the scale in float64, then float32
    scales = (np.maximum(peaks, 1e-12) / 127.0).astype(np.float32)  # (N,)
    values = np.round(vectors / scales[:, None]).clip(-127, 127).astype(np.int8)  # (N, D)
    return [scale.tobytes() + row.tobytes() for scale, row in zip(scales, values)]


def decode_vectors(blobs: list[bytes], codec: Codec) -> np.ndarray:
    """N blobs of one width -> (N, D) float32 in one conversion (the inverse of encode_vectors, up to its rounding)."""
    data = b"".join(blobs)
    if codec in ("float16", "float32"):
        return np.frombuffer(data, codec).reshape(len(blobs), -1).astype(np.float32)
    raw = np.frombuffer(data, np.uint8).reshape(len(blobs), -1)  # (N, 4 + D)
    scales = np.ascontiguousarray(raw[:, :4]).view(np.float32)  # (N, 1)
    return raw[:, 4:].view(np.int8).astype(np.float32) * scales


def encode_vector(vector: np.ndarray, codec: Codec) -> bytes:
    """(D,) float32 -> bytes (see encode_vectors)."""
    return encode_vectors(vector[None], codec)[0]


def decode_vector(data: bytes, codec: Codec) -> np.ndarray:
    """bytes -> (D,) float32 (see decode_vectors)."""
    return decode_vectors([data], codec)[0]


def vector_key(version: str, codec: Codec, kind: str, text: str) -> str:
    """The storage key of the vector of `text` (kind "i" item, "u" user) under one student version."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()
    return f"msd:{version}:{codec}:{kind}:{digest}"


class LRU:
    """In-process least-recently-used map key -> (D,) float32 vector; capacity 0 disables it.

    The vectors live in rows of one array (grown by doubling up to the capacity; an evicted key's row is
    reused), so a request's hits are read with one gather instead of stacking one array per key.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.slots: OrderedDict[str, int] = OrderedDict()  # key -> row, oldest first
        self.rows: np.ndarray | None = None  # (allocated, D) float32

    def __len__(self) -> int:
        return len(self.slots)

    def slot(self, key: str) -> int | None:
        """The row of key (now the most recent), or None."""
        slot = self.slots.get(key)
        if slot is not None:
            self.slots.move_to_end(key)
        return slot

    def gather(self, slots: list[int]) -> np.ndarray:
        """(len(slots), D) copies of the rows (safe against a later eviction reusing a row)."""
        return self.rows[slots]

    def get(self, key: str) -> np.ndarray | None:
        slot = self.slot(key)
        return None if slot is None else self.rows[slot].copy()

    def put(self, key: str, vector: np.ndarray) -> None:
        self.put_many([key], np.asarray(vector)[None])

    def put_many(self, keys: list[str], vectors: np.ndarray) -> None:
        """Store (N, D) vectors under keys, evicting the least recently used beyond the capacity."""
        if self.capacity <= 0:
            return
        for key, vector in zip(keys, vectors):
            slot = self.slots.get(key)
            if slot is None:
                slot = self.slots.popitem(last=False)[1] if len(self.slots) >= self.capacity else self._grow(vector)
            self.slots[key] = slot
            self.slots.move_to_end(key)
            self.rows[slot] = vector

    def _grow(self, vector: np.ndarray) -> int:
        """A new row index (rows fill densely until the capacity), enlarging the array when it is full."""
        used = len(self.slots)
        if self.rows is None or used >= len(self.rows):
            rows = np.zeros((min(self.capacity, max(1024, 2 * used)), *vector.shape), np.float32)
            if self.rows is not None:
                rows[:used] = self.rows[:used]
            self.rows = rows
        return used


class KeyedRows:
    """In-process rows by catalogue key: a dense (K + 1, W) table, so a request's rows are one gather.

    For rows that depend on a catalogue item alone (MSD's pre-computed item path), when the in-process level
    may hold the whole catalogue anyway (lru_size >= K): the OrderedDict of the LRU costs a lookup per key."""

    def __init__(self, size: int):
        self.rows: np.ndarray | None = None  # (K + 1, W) by catalogue key, row 0 never kept
        self.have = np.zeros(size, bool)  # (K + 1,)

    def take(self, keys: np.ndarray) -> np.ndarray | None:
        """(len(keys), W) the rows of catalogue keys, or None unless every key is > 0 and kept."""
        if self.rows is None or not self.have[keys].all():  # have[0] stays False: key 0 is never kept
            return None
        return np.take(self.rows, keys, axis=0)

    def put(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Keep the rows (N, W) of catalogue keys (N,) (0 = not in the catalogue: skipped)."""
        known = keys > 0
        if self.rows is None:
            self.rows = np.zeros((len(self.have), rows.shape[1]), np.float32)
        self.rows[keys[known]] = rows[known]
        self.have[keys[known]] = True


class RedisStore:
    """Redis as the second level. Down or gone: calls return nothing, the state change is logged once,
    and a new attempt is made `retry_s` seconds later (so a Redis that comes back is used again)."""

    def __init__(self, url: str, timeout_s: float = 0.25, retry_s: float = 1.0):
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise RuntimeError("--redis needs the redis client: pip install 'msd-toolkit[redis]'") from None
        self.url, self.retry_s, self.errors = url, retry_s, (redis.exceptions.RedisError, OSError)
        self.full_error = redis.exceptions.OutOfMemoryError  # maxmemory reached under `noeviction`
        self.full = False  # the last write was refused for memory (reads go on: Redis is up)
        # No client-side retries: a dead Redis must cost one refused connection, not seconds of backoff.
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                           retry=Retry(NoBackoff(), 0))
        self.down_until = 0.0  # monotonic time before which Redis is not tried again
        self.up = True

    def _call(self, fn: Callable[[], object]) -> object | None:
        if self.down_until > time.monotonic():
            return None
        try:
            out = fn()
        except self.errors as exc:
            if self.up:
                log.warning("redis at %s unavailable (%s): scoring goes on, vectors are computed instead", self.url,
                            exc)
            self.up, self.down_until = False, time.monotonic() + self.retry_s
            return None
        if not self.up:
            log.warning("redis at %s is back: caching in it again", self.url)
            self.up = True
        return out

    def ping(self) -> bool:
        return self._call(self.client.ping) is not None

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        out = self._call(lambda: self.client.mget(keys)) if keys else []
        return out if out is not None else [None] * len(keys)

    def set_many(self, items: dict[str, bytes]) -> bool:
        """Write vectors in one round trip; False when Redis was unavailable or full.

        A full Redis (maxmemory under `noeviction`) refuses writes but still answers reads: that is no outage,
        so it is logged once (and once more when writes succeed again), and reads are not suspended."""
        if not items:
            return True
        return self._call(lambda: self._write(items)) is True

    def _write(self, items: dict[str, bytes]) -> bool:
        try:
            self.client.mset(items)
        except self.full_error as exc:
            if not self.full:
                log.warning("redis at %s is full (%s): vectors are served but not stored", self.url, exc)
            self.full = True
            return False
        if self.full:
            log.warning("redis at %s accepts writes again", self.url)
        self.full = False
        return True


@dataclass(kw_only=True)
class CacheStats:
    """Where each requested vector came from."""

    lru: int = 0
    redis: int = 0
    computed: int = 0
    redis_writes: int = 0

    @property
    def lookups(self) -> int:
        return self.lru + self.redis + self.computed

    def as_dict(self) -> dict:
        hit = (self.lru + self.redis) / self.lookups if self.lookups else None
        return {"lru": self.lru, "redis": self.redis, "computed": self.computed, "redis_writes": self.redis_writes,
                "hit_rate": hit}

    def add(self, other: CacheStats) -> None:
        self.lru, self.redis = self.lru + other.lru, self.redis + other.redis
        self.computed, self.redis_writes = self.computed + other.computed, self.redis_writes + other.redis_writes


class VectorCache:
    """LRU -> Redis -> compute (all misses of a call in one batch) -> written back to both levels."""

    def __init__(self, *, version: str, codec: Codec, lru_size: int, redis: RedisStore | None):
        self.version, self.codec, self.lru, self.redis = version, codec, LRU(lru_size), redis

    def key(self, kind: str, text: str) -> str:
        return vector_key(self.version, self.codec, kind, text)

    def get(self, kind: str, texts: list[str], compute: Callable[[list[str]], np.ndarray],
            keys: list[str] | None = None) -> tuple[np.ndarray, CacheStats]:
        """(N, D) float32 vectors of texts (duplicates looked up once) and where they came from.

        keys: the texts' keys when the caller keeps them (`key(kind, text)`), so they are not hashed again."""
        keys = [self.key(kind, t) for t in texts] if keys is None else keys
        if not keys:
            return np.zeros((0, 0), np.float32), CacheStats()
        first = dict(zip(keys, texts))  # key -> text, unique, in order
        unique = list(first)
        slots = [self.lru.slot(k) for k in unique]
        hits = [i for i, s in enumerate(slots) if s is not None]
        parts = [(hits, self.lru.gather([slots[i] for i in hits]))] if hits else []
        stats = CacheStats(lru=len(hits))
        missing = [i for i, s in enumerate(slots) if s is None]
        if missing and self.redis is not None:
            blobs = self.redis.get_many([unique[i] for i in missing])
            read = [(i, b) for i, b in zip(missing, blobs) if b is not None]
            if read:
                vectors = decode_vectors([b for _, b in read], self.codec)
                self.lru.put_many([unique[i] for i, _ in read], vectors)
                parts.append(([i for i, _ in read], vectors))
                stats.redis = len(read)
                missing = [i for i, b in zip(missing, blobs) if b is None]
        if missing:
            stats.computed = len(missing)
            vectors, stats.redis_writes = self.store([unique[i] for i in missing],
                                                     compute([first[unique[i]] for i in missing]))
            parts.append((missing, vectors))
        out = np.empty((len(unique), parts[0][1].shape[1]), np.float32)
        for positions, vectors in parts:
            out[positions] = vectors
        if len(unique) == len(keys):
            return out, stats
        position = {k: i for i, k in enumerate(unique)}
        return out[[position[k] for k in keys]], stats

    def store(self, keys: list[str], vectors: np.ndarray) -> tuple[np.ndarray, int]:
        """Round computed vectors through the codec, keep them, write them back: (the rounded vectors, Redis writes)."""
        blobs = encode_vectors(vectors, self.codec)
        rounded = decode_vectors(blobs, self.codec)
        self.lru.put_many(keys, rounded)
        written = self.redis is not None and self.redis.set_many(dict(zip(keys, blobs)))
        return rounded, len(blobs) if written else 0
