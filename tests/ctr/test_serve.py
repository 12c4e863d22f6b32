"""`ctr serve` against a real redis-server: scores equal `ctr eval`'s, hits/misses/write-back, eviction,
student versions, Redis killed mid-run, malformed requests answered 4xx."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import fastapi  # noqa: F401  (the serve and redis extras come with `make test`: a missing one fails, never skips)
import numpy as np
import pytest
import redis
import torch

from ctr.cache import RedisStore, VectorCache
from ctr.scoring import ServeConfig, Served
from redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def student_knowledge(tmp_path_factory, prepared, tiny_student) -> Path:
    """Item and user tables written by the tiny student (`distill embed --users`)."""
    from distill.embed import EmbedConfig, embed_tables

    folder = tmp_path_factory.mktemp("serve-knowledge")
    embed_tables(EmbedConfig(model=str(tiny_student), items=prepared / "items.jsonl", users=prepared / "users.jsonl",
                             output=folder, max_length=32, max_history=5))
    return folder


def train_run(folder: Path, prepared: Path, model: str, knowledge: Path | None = None, **settings) -> Path:
    from ctr.train import train
    from ctr.train_config import CTRConfig

    train(CTRConfig(data=str(prepared), output=str(folder), model=model, knowledge=str(knowledge) if knowledge else None,
                    epochs=2, batch_size=64, learning_rate=0.01, embed_dim=8, hidden=[16], attention_hidden=[8],
                    adaptor_hidden=16, **settings))
    return folder


@pytest.fixture(scope="module")
def msd_run(tmp_path_factory, prepared, student_knowledge) -> Path:
    """MSD whose user vectors are the student's over the users.jsonl snapshot (`distill embed --users`)."""
    return train_run(tmp_path_factory.mktemp("msd-run"), prepared, "msd", student_knowledge, user_source="table")


@pytest.fixture(scope="module")
def msd_history_run(tmp_path_factory, prepared, student_knowledge) -> Path:
    """MSD whose user vector is the mean over the request's own history (the default)."""
    return train_run(tmp_path_factory.mktemp("msd-history-run"), prepared, "msd", student_knowledge)


@pytest.fixture(scope="module")
def msd_mean_run(tmp_path_factory, prepared, student_knowledge) -> Path:
    """MSD whose user vectors are the mean of their history items' vectors (bench/ctr_vectors.py user-mean)."""
    from ctr.user_table import write_user_mean_table
    from ground.vectors import ITEM_TABLE

    folder = tmp_path_factory.mktemp("mean-knowledge")
    (folder / ITEM_TABLE).write_bytes((student_knowledge / ITEM_TABLE).read_bytes())
    embed = {**json.loads((student_knowledge / "embed_config.json").read_text()), "users": None,
             "users_vector": "mean of the item vectors of the user's clicks up to T0"}
    (folder / "embed_config.json").write_text(json.dumps(embed))
    assert write_user_mean_table(folder, prepared / "users.jsonl") > 0
    return train_run(tmp_path_factory.mktemp("msd-mean-run"), prepared, "msd", folder, user_source="table")


@pytest.fixture(scope="module")
def elec_run(tmp_path_factory, prepared, student_knowledge) -> Path:
    return train_run(tmp_path_factory.mktemp("elec-run"), prepared, "elec", student_knowledge)


@pytest.fixture(scope="module")
def din_run(tmp_path_factory, prepared) -> Path:
    return train_run(tmp_path_factory.mktemp("din-run"), prepared, "din")


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def client_for(config: ServeConfig):
    from fastapi.testclient import TestClient

    from ctr.serve import create_app

    served = Served(config)
    return TestClient(create_app(served, config.max_body_bytes), raise_server_exceptions=False), served


def eval_rows(run: Path, n: int) -> tuple[list[dict], np.ndarray]:
    """The first n test rows as requests and `ctr eval`'s probabilities for them (its model, its batches)."""
    from ctr.data import build_split
    from ctr.runs import load_run
    from ctr.train import predict

    loaded = load_run(run)  # as `ctr eval` loads it (an ELEC run: its vanilla network)
    probs = predict(loaded.model, build_split(loaded.data, "test", loaded.features, loaded.max_history, n), 4096)
    rows = loaded.data.split("test").iloc[:n]
    requests = [{"user_id": r.user_id, "history": [str(i) for i in r.history], "candidates": [r.item_id]}
                for r in rows.itertuples()]
    return requests, probs


def a_request(prepared: Path, n_history: int = 4, n_candidates: int = 6) -> dict:
    items = [json.loads(line)["item_id"] for line in (prepared / "items.jsonl").read_text().splitlines()]
    return {"user_id": "u3", "history": items[:n_history], "candidates": items[n_history : n_history + n_candidates]}


@pytest.mark.parametrize("run_name, codec, tolerance", [("msd_run", "float16", 2e-3), ("msd_mean_run", "float16", 2e-3),
                                                        ("msd_run", "float32", 1e-6), ("msd_mean_run", "float32", 1e-6),
                                                        ("msd_history_run", "float32", 1e-6),
                                                        ("din_run", "float16", 1e-6), ("elec_run", "float16", 1e-6)])
def test_served_scores_equal_ctr_eval_scores(run_name, codec, tolerance, request):
    """float32 vectors (and the models that read none: DIN, ELEC's vanilla network) give `ctr eval`'s scores."""
    run = request.getfixturevalue(run_name)
    requests, expected = eval_rows(run, 25)
    client, served = client_for(ServeConfig(model=str(run), codec=codec))
    got = []
    for body in requests:
        response = client.post("/score", json=body)
        assert response.status_code == 200, response.text
        got.extend(response.json()["scores"])
    assert (served.knowledge is None) == (run_name in ("din_run", "elec_run"))  # no student, no cache
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance)
    assert np.std(expected) > 1e-3  # the rows are not all scored alike


@pytest.mark.parametrize("run_name", ["msd_run", "msd_mean_run", "elec_run"])
def test_a_request_scores_the_same_cold_and_after_others(run_name, prepared, request):
    """The per-user memo, the kept item and table rows (grown by a larger request) never leak between requests."""
    run = request.getfixturevalue(run_name)
    body = a_request(prepared, 3, 5)
    first = Served(ServeConfig(model=str(run))).score(**body)["scores"]  # a fresh server: everything computed
    served = Served(ServeConfig(model=str(run)))
    larger = {**a_request(prepared, 8, 12), "user_id": "u5"}
    for other in (larger, body, a_request(prepared, 1, 2), larger):
        served.score(**other)
    again = served.score(**body)
    np.testing.assert_allclose(again["scores"], first, rtol=0, atol=1e-6)
    if served.knowledge is not None:
        assert again["cache"]["computed"] == 0 and again["cache"]["hit_rate"] == 1.0


def test_hit_miss_and_write_back(msd_run, prepared, redis_server):

    body = a_request(prepared)
    client, _ = client_for(ServeConfig(model=str(msd_run), redis=redis_server.url, lru_size=0))
    first = client.post("/score", json=body).json()
    n_vectors = 4 + 6 + 1  # history, candidates, the user
    # written back: each item's raw vector and its pre-computed row (ctr.adapted), the user's raw vector
    n_written = n_vectors + 4 + 6
    assert first["cache"] == {"lru": 0, "redis": 0, "computed": n_vectors, "redis_writes": n_written, "hit_rate": 0.0}
    assert redis.Redis.from_url(redis_server.url).dbsize() == n_written
    second = client.post("/score", json=body).json()
    assert second["cache"]["redis"] == n_vectors and second["cache"]["computed"] == 0
    assert second["scores"] == first["scores"]
    # a second server process-level cache: Redis answers first, then its own LRU
    client2, _ = client_for(ServeConfig(model=str(msd_run), redis=redis_server.url))
    assert client2.post("/score", json=body).json()["cache"]["redis"] == n_vectors
    again = client2.post("/score", json=body).json()
    assert again["cache"]["lru"] == n_vectors and again["scores"] == first["scores"]
    assert client2.get("/stats").json()["cache"]["lru"] == n_vectors


def test_a_new_student_never_reads_the_old_students_vectors(msd_run, prepared, redis_server, tmp_path, tiny_student):
    from transformers import LlamaForCausalLM

    other = tmp_path / "student-v2"
    lm = LlamaForCausalLM.from_pretrained(tiny_student)
    with torch.no_grad():
        lm.model.norm.weight.mul_(1.5)  # retrained: other weights, same architecture
    lm.save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (tiny_student / name).exists():
            (other / name).write_bytes((tiny_student / name).read_bytes())
    body = a_request(prepared)
    old, old_served = client_for(ServeConfig(model=str(msd_run), redis=redis_server.url))
    new, new_served = client_for(ServeConfig(model=str(msd_run), redis=redis_server.url, student=str(other)))
    assert old_served.knowledge.cache.version != new_served.knowledge.cache.version
    before = old.post("/score", json=body).json()
    after = new.post("/score", json=body).json()
    assert after["cache"]["redis"] == 0 and after["cache"]["computed"] == 11  # nothing stale served
    assert after["scores"] != before["scores"]
    keys = {k.decode() for k in redis.Redis.from_url(redis_server.url).keys("*")}
    versions = {old_served.knowledge.cache.version, new_served.knowledge.cache.version,
                old_served.knowledge.adapted.version, new_served.knowledge.adapted.version}
    assert len(versions) == 4 and {k.split(":")[1] for k in keys} == versions  # a model's rows follow its student


def test_eviction_under_the_memory_cap(tmp_path):

    server = RedisServer(tmp_path, maxmemory="2mb").start()
    try:
        cache = VectorCache(version="v", codec="float16", lru_size=0, redis=RedisStore(server.url))
        rng = np.random.default_rng(0)
        compute = lambda texts: rng.normal(size=(len(texts), 512)).astype(np.float32)
        texts = [f"item {n}" for n in range(6000)]  # ~6000 x 1 KiB: three times the cap
        for start in range(0, len(texts), 500):
            assert cache.get("i", texts[start : start + 500], compute)[1].redis_writes == 500
        client = redis.Redis.from_url(server.url)
        assert client.info("stats")["evicted_keys"] > 0 and client.dbsize() < len(texts)
        assert client.info("memory")["used_memory"] <= 2 * 1024 * 1024 * 1.1
        first, stats = cache.get("i", texts[:10], compute)  # the oldest were evicted: computed again, still served
        assert stats.computed > 0 and first.shape == (10, 512)
    finally:
        server.stop()


def test_redis_killed_mid_run_every_request_answered_with_the_same_scores(msd_run, prepared, redis_server, caplog):
    bodies = [a_request(prepared, 3, 5), a_request(prepared, 5, 8)]
    reference, _ = client_for(ServeConfig(model=str(msd_run)))
    expected = [reference.post("/score", json=b).json()["scores"] for b in bodies]
    client, served = client_for(ServeConfig(model=str(msd_run), redis=redis_server.url, lru_size=0,
                                            redis_retry_s=0.2))
    caplog.set_level(logging.WARNING, logger="ctr.serve")
    assert [client.post("/score", json=b).json()["scores"] for b in bodies] == expected
    redis_server.stop()
    for _ in range(3):
        answers = [client.post("/score", json=b) for b in bodies]
        assert [a.status_code for a in answers] == [200, 200]
        assert [a.json()["scores"] for a in answers] == expected
        assert all(a.json()["cache"]["computed"] > 0 and a.json()["cache"]["redis_writes"] == 0 for a in answers)
    assert client.get("/health").json()["redis"] is False
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1  # said once
    redis_server.start()  # comes back, empty, on the same port
    time.sleep(0.3)
    back = client.post("/score", json=bodies[0]).json()
    assert back["scores"] == expected[0] and back["cache"]["redis_writes"] > 0
    assert any("is back" in r.getMessage() for r in caplog.records) and served.knowledge.cache.redis.up


def test_malformed_requests_are_answered_4xx_never_500(din_run, msd_run, prepared):
    valid = a_request(prepared)
    client, _ = client_for(ServeConfig(model=str(msd_run), max_body_bytes=20_000))
    bad = [b"", b"not json", b"[]", b"{", b'{"user_id": "u1"}', b"null", b'"text"', b"1e999999",
           json.dumps({**valid, "extra": 1}).encode(), json.dumps({**valid, "candidates": []}).encode(),
           json.dumps({**valid, "user_id": True}).encode(), json.dumps({**valid, "user_id": 1.5}).encode(),
           json.dumps({**valid, "user_id": ["a"]}).encode(), json.dumps({**valid, "history": "i1"}).encode(),
           json.dumps({**valid, "candidates": ["no-such-item"]}).encode(),
           json.dumps({**valid, "candidates": [{"item_id": "n1"}]}).encode(),  # a record without a name
           json.dumps({**valid, "candidates": [{"item_id": "n1", "name": "x", "colour": "red"}]}).encode(),
           json.dumps({**valid, "user_features": {"no_such_field": "x"}}).encode(),
           json.dumps({**valid, "candidates": ["i1"] * 5000}).encode(),  # over the byte limit: 413
           json.dumps({**valid, "history": [[[[[]]]]]}).encode(), b"\xff\xfe\x00"]
    for body in bad:
        response = client.post("/score", content=body, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (body[:80], response.status_code, response.text[:200])
    assert client.post("/score", content=json.dumps(valid), headers={"content-type": "text/plain"}).status_code < 500
    rng, text = np.random.default_rng(0), json.dumps(valid).encode()
    for _ in range(200):  # random byte edits of a valid body: scored or refused, never a server error
        data = bytearray(text)
        for pos in rng.integers(0, len(data), size=3):
            data[pos] = int(rng.integers(0, 256))
        assert client.post("/score", content=bytes(data), headers={"content-type": "application/json"}).status_code < 500
    assert client.post("/score", json=valid).status_code == 200


def test_a_new_item_record_is_scored_from_its_name(msd_run, prepared):
    client, _ = client_for(ServeConfig(model=str(msd_run)))
    body = a_request(prepared)
    body["candidates"] = body["candidates"][:2] + [{"item_id": "brand-new", "name": "Comedy film of the year",
                                                     "attributes": {"genre": "Comedy"}}]
    response = client.post("/score", json=body).json()
    assert len(response["scores"]) == 3 and response["cache"]["computed"] == 4 + 3 + 1


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctr.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


def test_warm_fills_redis_with_the_top_items_then_hits(msd_run, prepared, redis_server):
    from ctr.scoring import warm

    first = warm(ServeConfig(model=str(msd_run), redis=redis_server.url, lru_size=0), top=10)
    assert first["computed"] == 10 and first["redis_writes"] == 10
    assert first["from_tables"] and not first["student_loaded"]  # the tables are this student's own output
    again = warm(ServeConfig(model=str(msd_run), redis=redis_server.url, lru_size=0), top=12)
    assert again["redis"] == 10 and again["computed"] == 2
    body = a_request(prepared)  # its 10 items are among the 12 warmed (stats are all 0: items.jsonl order)
    warmed, _ = client_for(ServeConfig(model=str(msd_run), redis=redis_server.url))
    computed, _ = client_for(ServeConfig(model=str(msd_run)))
    from_redis = warmed.post("/score", json=body).json()
    assert from_redis["cache"]["redis"] == 10
    np.testing.assert_allclose(from_redis["scores"], computed.post("/score", json=body).json()["scores"], atol=1e-3)


def test_warm_without_a_reachable_redis_is_one_line(msd_run):
    result = run_cli("warm", "--model", str(msd_run), "--top", "3", "--redis", f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: redis at")


def wait_healthy(port: int, process: subprocess.Popen, seconds: float = 120) -> dict | None:
    """The server's /health answer once it answers (None if it exits or `seconds` pass first)."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=60).json()
        except httpx.TransportError:
            time.sleep(0.2)
    return None


def test_cli_serves_on_loopback(din_run, prepared):
    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ctr.cli", "serve", "--model", str(din_run), "--port", str(port),
                                "--threads", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert wait_healthy(port, process) == {"status": "ok", "model": "din", "redis": None}
        scores = httpx.post(f"http://127.0.0.1:{port}/score", json=a_request(prepared), timeout=300).json()["scores"]
        assert len(scores) == 6 and all(0 < s < 1 for s in scores)
    finally:
        process.terminate()
        process.wait(timeout=30)
