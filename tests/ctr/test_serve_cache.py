"""The vector cache without Redis: codecs, keys, LRU order, one student batch per call for the misses only."""

from __future__ import annotations

import numpy as np
import pytest

from ctr.cache import LRU, VectorCache, decode_vector, decode_vectors, encode_vector, encode_vectors, vector_key


@pytest.mark.parametrize("codec, size, tolerance", [("float16", 2 * 64, 1e-3), ("int8", 4 + 64, 0.02),
                                                         ("float32", 4 * 64, 0.0)])
def test_codecs_are_compact_and_close(codec, size, tolerance):
    vector = np.random.default_rng(0).normal(size=64).astype(np.float32)
    data = encode_vector(vector, codec)
    assert len(data) == size
    back = decode_vector(data, codec)
    assert back.dtype == np.float32 and np.abs(back - vector).max() <= tolerance * np.abs(vector).max()
    assert np.array_equal(decode_vector(encode_vector(back, codec), codec), back)  # rounding twice changes nothing


def test_keys_carry_the_version_and_the_content():
    key = vector_key("abc123", "float16", "i", "Toy Story")
    assert key.startswith("msd:abc123:float16:i:")
    assert key != vector_key("abc124", "float16", "i", "Toy Story")
    assert key != vector_key("abc123", "float16", "i", "Toy Story 2")
    assert key != vector_key("abc123", "int8", "i", "Toy Story")


def test_lru_evicts_the_least_recently_used():
    lru = LRU(2)
    lru.put("a", np.zeros(1))
    lru.put("b", np.ones(1))
    assert lru.get("a") is not None  # a is now the most recent
    lru.put("c", np.ones(1))
    assert lru.get("b") is None and lru.get("a") is not None and lru.get("c") is not None
    off = LRU(0)
    off.put("a", np.zeros(1))
    assert off.get("a") is None


def test_misses_are_computed_once_in_one_batch_then_hit():
    calls = []

    def compute(texts):
        calls.append(list(texts))
        return np.stack([np.full(4, len(t), np.float32) for t in texts])

    cache = VectorCache(version="v", codec="float16", lru_size=10, redis=None)
    vectors, stats = cache.get("i", ["aa", "b", "aa"], compute)
    assert calls == [["aa", "b"]] and stats.computed == 2 and stats.redis_writes == 0
    assert vectors.shape == (3, 4) and np.array_equal(vectors[0], vectors[2])
    vectors, stats = cache.get("i", ["b", "ccc"], compute)
    assert calls[-1] == ["ccc"] and (stats.lru, stats.computed) == (1, 1)
    assert vectors[:, 0].tolist() == [1.0, 3.0]


@pytest.mark.parametrize("codec", ["float16", "int8", "float32"])
def test_a_block_converts_as_its_vectors_one_by_one(codec):
    vectors = np.random.default_rng(1).normal(size=(7, 16)).astype(np.float32) * np.arange(7)[:, None]  # row 0: zeros
    blobs = encode_vectors(vectors, codec)
    assert blobs == [encode_vector(v, codec) for v in vectors]
    assert np.array_equal(decode_vectors(blobs, codec), np.stack([decode_vector(b, codec) for b in blobs]))


def test_lru_rows_are_reused_and_a_gather_is_a_copy():
    lru = LRU(3)
    lru.put_many(["a", "b", "c"], np.arange(12, dtype=np.float32).reshape(3, 4))
    hits = lru.gather([lru.slot("a"), lru.slot("c")])
    lru.put_many(["d", "e"], np.full((2, 4), -1.0, np.float32))  # evicts b then a: their rows are rewritten
    assert hits[:, 0].tolist() == [0.0, 8.0]  # what was read before stays as read
    assert lru.get("a") is None and lru.get("b") is None and len(lru) == 3
    assert lru.get("c")[0] == 8.0 and lru.get("e")[0] == -1.0 and len(lru.rows) == 3
