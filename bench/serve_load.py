"""Load for `bench.bench_serve`: `ctr serve` processes, concurrent keep-alive clients, and paired measurement.

Pairs are measured in alternating *blocks*: a block of requests goes to server A with c concurrent clients,
the same block to server B with c clients, the next block to B first, and so on. Each server sees the
same concurrency and, block by block, the same machine load. (Sending each body to both servers in turn
from the same c clients, as the bench did until issue 26, gives the slower server nearly all c requests
in flight and the faster one about one: its latency is then a 1-client figure, the other's a c-client one.)
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.ctr.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


class Server:
    """A `ctr serve` process on a free loopback port (torch on one thread per process)."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "ctr.cli", "serve", "--port", str(self.port),
                                         "--threads", "1", *args], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"ctr serve {' '.join(args)} did not start")
            time.sleep(0.5)

    def healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


@dataclass
class Tally:
    """What one server answered: latencies (ms), seconds spent in its blocks, cache counts, failures, scores."""

    latencies: list[float] = field(default_factory=list)
    busy_s: float = 0.0
    counts: dict = field(default_factory=lambda: {"lru": 0, "redis": 0, "computed": 0})
    failures: int = 0
    answers: list[tuple[float, int, dict]] = field(default_factory=list)  # (sent at, body index, answer)

    def summary(self, clients: int) -> dict:
        q = lambda p: round(float(np.percentile(self.latencies, p)), 2) if self.latencies else None
        lookups = sum(self.counts.values())
        return {"clients": clients, "requests": len(self.latencies), "failures": self.failures, "p50_ms": q(50),
                "p95_ms": q(95), "p99_ms": q(99), "rps": round(len(self.latencies) / max(self.busy_s, 1e-9), 2),
                "hit_rate": round((self.counts["lru"] + self.counts["redis"]) / lookups, 4) if lookups else None,
                **self.counts}


def post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, dict]:
    conn.request("POST", "/score", body=body, headers={"content-type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def run_block(port: int, bodies: list[bytes], clients: int, tally: Tally, until: float | None = None,
              origin: float = 0.0) -> None:
    """Send the bodies (cycled until `until` when given) with `clients` concurrent keep-alive connections."""
    lock, cursor = threading.Lock(), [0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            with lock:
                i, cursor[0] = cursor[0], cursor[0] + 1
            if (until is None and i >= len(bodies)) or (until is not None and time.monotonic() >= until):
                return
            sent = time.perf_counter()
            try:
                status, answer = post(conn, bodies[i % len(bodies)])
            except (OSError, http.client.HTTPException, ValueError):
                status, answer = 0, {}
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            elapsed = (time.perf_counter() - sent) * 1000
            with lock:
                record(tally, status, answer, elapsed, (time.monotonic() - origin, i % len(bodies)))

    tally.busy_s += in_threads(client, clients)


def in_threads(target, n: int) -> float:
    """Run `target` in n threads at once; the seconds until the last one ends."""
    start = time.perf_counter()
    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def record(tally: Tally, status: int, answer: dict, elapsed_ms: float, where: tuple[float, int]) -> None:
    if status != 200:
        tally.failures += 1
        return
    tally.latencies.append(elapsed_ms)
    for k in tally.counts:
        tally.counts[k] += (answer.get("cache") or {}).get(k, 0)
    tally.answers.append((where[0], where[1], answer))


def paired(ports: dict[str, int], bodies: list[bytes], clients: int, block: int) -> dict[str, dict]:
    """Every body to each server, in blocks of `block` (at least 2 x clients), the servers' order alternating
    per block: same requests, same concurrency, the same load block by block. Per server: its summary."""
    block = max(block, 2 * clients)
    tallies = {name: Tally() for name in ports}
    names = list(ports)
    for j, start in enumerate(range(0, len(bodies), block)):
        for name in (names if j % 2 == 0 else names[::-1]):
            run_block(ports[name], bodies[start : start + block], clients, tallies[name])
    return {name: t.summary(clients) for name, t in tallies.items()}


def per_body_pairs(ports: dict[str, int], bodies: list[bytes], clients: int) -> dict[str, dict]:
    """The bench's old pairing: each of `clients` threads sends a body to one server, then to the other (order
    rotating per body). Kept to show what it measured: the slower server holds the clients."""
    names, tallies = list(ports), {name: Tally() for name in ports}
    lock, cursor = threading.Lock(), [0]

    def client() -> None:
        conns = {n: http.client.HTTPConnection("127.0.0.1", ports[n], timeout=600) for n in names}
        while True:
            with lock:
                i, cursor[0] = cursor[0], cursor[0] + 1
            if i >= len(bodies):
                return
            for name in names[i % 2 :] + names[: i % 2]:
                sent = time.perf_counter()
                status, answer = post(conns[name], bodies[i])
                with lock:
                    record(tallies[name], status, answer, (time.perf_counter() - sent) * 1000, (0.0, i))

    busy = in_threads(client, clients)
    for t in tallies.values():
        t.busy_s = busy
    return {name: t.summary(clients) for name, t in tallies.items()}
