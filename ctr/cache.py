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

Codec = Literal["float16", "int8"]
CODECS: tuple[str, ...] = ("float16", "int8")
log = logging.getLogger("ctr.serve")


def encode_vector(vector: np.ndarray, codec: Codec) -> bytes:
    """(D,) float32 -> bytes: float16, or int8 with a float32 scale in front (max |x| maps to 127)."""
    if codec == "float16":
        return vector.astype(np.float16).tobytes()
    scale = np.float32(max(float(np.abs(vector).max(initial=0.0)), 1e-12) / 127.0)
    return scale.tobytes() + np.round(vector / scale).clip(-127, 127).astype(np.int8).tobytes()


def decode_vector(data: bytes, codec: Codec) -> np.ndarray:
    """bytes -> (D,) float32 (the inverse of encode_vector, up to its rounding)."""
    if codec == "float16":
        return np.frombuffer(data, np.float16).astype(np.float32)
    scale = np.frombuffer(data[:4], np.float32)[0]
    return np.frombuffer(data[4:], np.int8).astype(np.float32) * scale


def vector_key(version: str, codec: Codec, kind: str, text: str) -> str:
    """The storage key of the vector of `text` (kind "i" item, "u" user) under one student version."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()
    return f"msd:{version}:{codec}:{kind}:{digest}"


class LRU:
    """In-process least-recently-used map key -> (D,) float32 vector; capacity 0 disables it."""

    def __init__(self, capacity: int):
        self.capacity, self.entries = capacity, OrderedDict()

    def get(self, key: str) -> np.ndarray | None:
        vector = self.entries.get(key)
        if vector is not None:
            self.entries.move_to_end(key)
        return vector

    def put(self, key: str, vector: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        self.entries[key] = vector
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)


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
        """Write vectors in one round trip; False when Redis was unavailable."""
        if not items:
            return True
        return self._call(lambda: self.client.mset(items)) is not None


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

    def get(self, kind: str, texts: list[str], compute: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, CacheStats]:
        """(N, D) float32 vectors of texts (duplicates looked up once) and where they came from."""
        stats, unique = CacheStats(), list(dict.fromkeys(texts))
        keys = [self.key(kind, t) for t in unique]
        found: dict[str, np.ndarray] = {}
        for text, key in zip(unique, keys):
            vector = self.lru.get(key)
            if vector is not None:
                found[text] = vector
        stats.lru = len(found)
        missing = [(t, k) for t, k in zip(unique, keys) if t not in found]
        if missing and self.redis is not None:
            for (text, key), data in zip(missing, self.redis.get_many([k for _, k in missing])):
                if data is not None:
                    found[text] = decode_vector(data, self.codec)
                    self.lru.put(key, found[text])
                    stats.redis += 1
            missing = [(t, k) for t, k in missing if t not in found]
        if missing:
            stats.computed = len(missing)
            stats.redis_writes = self.store(missing, compute([t for t, _ in missing]), found)
        return np.stack([found[t] for t in texts]), stats

    def store(self, missing: list[tuple[str, str]], vectors: np.ndarray, found: dict[str, np.ndarray]) -> int:
        """Round the computed vectors through the codec, keep them, write them back; returns Redis writes."""
        blobs = {key: encode_vector(vector, self.codec) for (_, key), vector in zip(missing, vectors)}
        for text, key in missing:
            found[text] = decode_vector(blobs[key], self.codec)
            self.lru.put(key, found[text])
        written = self.redis is not None and self.redis.set_many(blobs)
        return len(blobs) if written else 0
