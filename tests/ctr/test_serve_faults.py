"""`ctr serve` while its real redis-server fails (issue 26): stopped during a load run and started again (empty),
and full (maxmemory under allkeys-lru, and under noeviction). Every request is answered, with the scores of the
path without a cache, and the hit rate comes back. Seconds, not the bench's 60-second run."""

from __future__ import annotations

import logging
import time

import numpy as np

from ctr.scoring import ServeConfig
from test_serve import (a_request, client_for, msd_history_run, redis_server,  # noqa: F401 (fixtures)
                        student_knowledge)



def bodies_of(prepared, n: int, new: int = 4) -> list[dict]:
    """Requests with items of the catalogue and n new item records each (new texts: new vectors to store)."""
    out = []
    for k in range(n):
        body = a_request(prepared, 3 + k % 4, 4 + k % 3)
        body["candidates"] += [{"item_id": f"new-{k}-{j}", "name": f"A new film {k} {j} about {k * j}"} for j in range(new)]
        out.append(body)
    return out


def reference(run, bodies) -> list[list[float]]:
    """Scores with no cache at all: every vector computed by the student."""
    client, _ = client_for(ServeConfig(model=str(run), codec="float32", lru_size=0))
    return [client.post("/score", json=b).json()["scores"] for b in bodies]


def load_run(client, bodies, expected, seconds: float, events: dict) -> list[dict]:
    """Send the bodies in turn for `seconds`; events: {time offset: action}. Each answer's status, error, cache."""
    out, start, pending = [], time.monotonic(), sorted(events.items())
    while time.monotonic() - start < seconds:
        while pending and time.monotonic() - start >= pending[0][0]:
            pending.pop(0)[1]()
        i, sent = len(out) % len(bodies), time.monotonic() - start
        response = client.post("/score", json=bodies[i])
        answer = response.json() if response.status_code == 200 else {}
        error = float(np.abs(np.subtract(answer["scores"], expected[i])).max()) if answer else None
        out.append({"t": sent, "status": response.status_code, "error": error,
                    "cache": answer.get("cache")})
    return out


def test_redis_stopped_and_started_during_a_load_run(msd_history_run, prepared, redis_server, caplog):  # noqa: F811
    bodies = bodies_of(prepared, 6)
    expected = reference(msd_history_run, bodies)
    client, served = client_for(ServeConfig(model=str(msd_history_run), codec="float32", redis=redis_server.url,
                                            lru_size=0, redis_retry_s=0.2))
    caplog.set_level(logging.WARNING, logger="ctr.serve")
    answers = load_run(client, bodies, expected, 4.0, {1.0: redis_server.stop, 2.0: redis_server.start})
    assert all(a["status"] == 200 for a in answers) and len(answers) > 3 * len(bodies)
    assert max(a["error"] for a in answers) <= 1e-5  # no cache, Redis, or Redis gone: the same scores
    down = [a for a in answers if 1.0 < a["t"] < 2.0]
    assert down and all(a["cache"]["computed"] > 0 and a["cache"]["redis_writes"] == 0 for a in down)
    assert all(a["cache"]["hit_rate"] == 1.0 for a in answers[-len(bodies):])  # back, and refilled by write-back
    assert served.knowledge.cache.redis.up
    said = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in said) == 1 and sum("is back" in m for m in said) == 1


def cap_memory(url: str, spare_bytes: int, policy: str):
    """Set maxmemory to what Redis uses now plus spare_bytes (negative: less), under the given policy; the client."""
    import redis

    client = redis.Redis.from_url(url)
    client.config_set("maxmemory-policy", policy)  # first: under the fixture's allkeys-lru a cap evicts at once
    client.config_set("maxmemory", client.info("memory")["used_memory"] + spare_bytes)
    return client


def test_a_full_redis_that_evicts_keeps_serving(msd_history_run, prepared, redis_server):  # noqa: F811
    bodies = bodies_of(prepared, 10, new=40)
    expected = reference(msd_history_run, bodies)
    client, served = client_for(ServeConfig(model=str(msd_history_run), codec="float32", redis=redis_server.url,
                                            lru_size=0))
    redis = cap_memory(redis_server.url, 150_000, "allkeys-lru")  # about half the bodies' vectors
    answers = load_run(client, bodies, expected, 3.0, {})
    assert all(a["status"] == 200 for a in answers) and max(a["error"] for a in answers) <= 1e-5
    assert redis.info("stats")["evicted_keys"] > 0 and served.knowledge.cache.redis.up
    assert sum(a["cache"]["redis"] for a in answers) > 0  # what fits is still read


def test_a_full_redis_that_refuses_writes_keeps_serving_and_reading(msd_history_run, prepared, redis_server,  # noqa: F811
                                                                     caplog):
    bodies = bodies_of(prepared, 30)
    expected = reference(msd_history_run, bodies)
    client, served = client_for(ServeConfig(model=str(msd_history_run), codec="float32", redis=redis_server.url,
                                            lru_size=0))
    caplog.set_level(logging.WARNING, logger="ctr.serve")
    first = client.post("/score", json=bodies[0]).json()  # stored while there is room
    assert first["cache"]["redis_writes"] > 0
    # below what Redis uses now: every write is refused. A few KiB of room was flaky: Redis's own use shrinks
    # (client buffers) and lets a small write through, so "full" was left and logged again.
    cap_memory(redis_server.url, -100_000, "noeviction")
    answers = load_run(client, bodies, expected, 3.0, {})
    assert all(a["status"] == 200 for a in answers) and max(a["error"] for a in answers) <= 1e-5
    store = served.knowledge.cache.redis
    assert store.full and store.up  # full is no outage: reads go on
    again = client.post("/score", json=bodies[0]).json()["cache"]
    assert again["hit_rate"] == 1.0, again
    said = [r.getMessage() for r in caplog.records]
    assert sum("is full" in m for m in said) == 1 and not any("unavailable" in m for m in said)
