"""Serving latency of `ctr serve`, DIN and MSD side by side (paper section 3.5: 35 ms vs 37.2 ms, ratio 1.063).

    python -m bench.bench_serve                       (the runs below, trained into --work if absent)
    python -m bench.bench_serve --din RUN --msd RUN [--skip faults,scale]

Requests: a user with a 20-item history and 100 candidates (the row's target + 99 test items drawn by their
test frequency) from the test split, seeded. Every server is a `ctr serve` process, torch on one thread.
DIN and MSD are measured in one run on the same requests, in alternating blocks at the same concurrency
(bench/serve_load.py says why the old per-body pairing was wrong). Scenarios:
  warm          DIN | MSD with its in-process LRU warm (one unmeasured pass), Redis filled by `ctr warm`
  raw-path      DIN | MSD | MSD on the old item path (`--item-path raw`: raw vectors adapted every request)
  redis         DIN | MSD with the LRU off: every item's row from Redis (one MGET a request)
  old-pairing   the old per-body pairing at 8 clients, on the warm servers (to show what it measured)
  cold          MSD, no Redis, empty LRU: each item's first request (every vector computed by the student)
  scale         MSD warm, one process | `--workers 2` sharing the Redis, 32 clients
  faults        MSD, LRU off: Redis killed after 15 s of a 60 s run at 8 clients, started again (empty) at 30 s;
                failures, scores against the no-cache answers, hit rate per 5 s
  full          MSD, LRU off, Redis capped below the catalogue (allkeys-lru) for 15 s at 8 clients
  elec          with --elec RUN: DIN | ELEC's vanilla network (no student, no cache)
  in-process    no HTTP: `Served.score` of DIN and MSD (warm from the Redis) in one process, request by request
p50/p95/p99 ms and requests/s at 1, 8 and 32 clients, the hit rate, the machine's load average per row.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import record
from bench.serve_load import ENV, ROOT, Server, Tally, paired, per_body_pairs, run_block
from tests.ctr.redis_server import RedisServer

DEFAULT_DATA = Path("/work/runs/trust21/prepared/ml-1m")
DEFAULT_KNOWLEDGE = Path("/work/runs/trust21/emb-ml1m-smollm2")


def ctr_cli(*args: str) -> str:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "ctr.cli", *args], cwd=ROOT, env=ENV, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"ctr {args[0]} failed: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout


def ensure_run(work: Path, data: Path, model: str, knowledge: Path, train_rows: int) -> Path:
    folder = work / model
    if not (folder / "model.pt").exists():
        print(f"training {model} (1 epoch, the first {train_rows:,} train rows) -> {folder}", flush=True)
        ctr_cli("train", "--data", str(data), "-o", str(folder), "--model", model, "--knowledge", str(knowledge),
                "--epochs", "1", "--max-train-samples", str(train_rows), "--max-eval-samples", "5000")
    return folder


def request_mix(data: Path, n: int, seed: int = 0) -> list[dict]:
    """n requests: a test row with >= 20 history items, its last 20, its target + 99 test items by frequency."""
    import pandas as pd

    test = pd.read_parquet(data / "samples.parquet", columns=["user_id", "item_id", "history", "split"])
    test = test[test["split"] == "test"]
    rows = test[test["history"].map(len) >= 20]
    rng = np.random.default_rng(seed)
    items, counts = np.unique(test["item_id"].to_numpy(), return_counts=True)
    out = []
    for i in rng.choice(len(rows), size=n, replace=False):
        row = rows.iloc[int(i)]
        pool = rng.choice(len(items), size=150, replace=False, p=counts / counts.sum())
        others = [str(items[j]) for j in pool if items[j] != row["item_id"]][:99]
        out.append({"user_id": str(row["user_id"]), "history": [str(h) for h in row["history"][-20:]],
                    "candidates": [str(row["item_id"]), *others]})
    return out


def flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushall()


class Servers:
    """`ctr serve` processes started together and stopped together (also when the bench is interrupted)."""

    def __init__(self, **servers: list[str]):
        self.started: dict[str, Server] = {}
        try:
            for name, args in servers.items():
                self.started[name] = Server(*args)
        except BaseException:
            self.stop()
            raise

    @property
    def ports(self) -> dict[str, int]:
        return {name: server.port for name, server in self.started.items()}

    def stop(self) -> None:
        for server in self.started.values():
            server.stop()


def rows_of(label: str, results: dict[str, dict]) -> list[dict]:
    """One printed and recorded row per server, with the load average when the measurement ended."""
    load = round(os.getloadavg()[0], 2)
    out = []
    for name, result in results.items():
        row = {"scenario": label, "server": name, **result, "load_avg_1m": load}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def side_by_side(label: str, servers: dict[str, list[str]], bodies: list[bytes], clients: list[int], block: int,
                 extra=None) -> list[dict]:
    """Start the servers, warm them with one unmeasured pass, measure them paired at each client count."""
    print(f"scenario {label}: starting {', '.join(servers)}", flush=True)
    group = Servers(**servers)
    try:
        for port in group.ports.values():
            run_block(port, bodies, 1, Tally())
        rows = []
        for c in clients:
            rows += rows_of(label, paired(group.ports, bodies, c, block))
        if extra is not None:
            rows += extra(group)
        return rows
    finally:
        group.stop()


def ratios(rows: list[dict], label: str) -> dict[str, dict]:
    """MSD/DIN p50 and p99 per client count of one paired scenario."""
    by = {(r["server"], r["clients"]): r for r in rows if r["scenario"] == label}
    return {f"{name}, {c} clients": {q: round(by[(name, c)][q] / by[("din", c)][q], 3) for q in ("p50_ms", "p99_ms")}
            for (name, c) in by if name != "din" and ("din", c) in by}


def in_process(din: Path, msd: Path, mix: list[dict], redis: str, rounds: int = 5) -> dict:
    """The model path alone, no HTTP: `Served.score` of DIN and MSD (warm LRU, filled from the warmed `redis`) in
    one process, one thread, alternating request by request; the median per request of each, and where MSD's
    extra time goes (its logits against DIN's, and inside them the backbone's inputs, the attention included)."""
    import torch

    from ctr.scoring import ServeConfig, Served

    torch.set_num_threads(1)
    served = {"din": Served(ServeConfig(model=str(din))), "msd": Served(ServeConfig(model=str(msd), redis=redis))}
    path = served["msd"].request_path
    parts = {"msd item fields": (path, "item_fields"), "msd user field": (path, "user_field"),
             "msd logits": (served["msd"], "logits"), "din logits": (served["din"], "logits"),
             "msd backbone inputs": (served["msd"].model.backbone, "inputs"),
             "din inputs": (served["din"].model, "inputs")}
    spent: dict[str, list[float]] = {name: [] for name in [*served, *parts]}

    def timer(name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[name].append(time.perf_counter() - start)
            return out
        return timed

    for name, (obj, attr) in parts.items():  # each step of MSD's path, and DIN's model, through a wrapper
        setattr(obj, attr, timer(name, getattr(obj, attr)))
    for r in range(rounds + 1):  # round 0 fills the LRU and is not kept
        for body in mix:
            for name, s in served.items():
                start = time.perf_counter()
                s.score(body["user_id"], body["history"], body["candidates"])
                if r:
                    spent[name].append(time.perf_counter() - start)
    skip = len(mix)
    out = {name: round(float(np.median(times[skip:] if name in parts else times)) * 1e3, 4)
           for name, times in spent.items() if len(times) > skip}
    out["msd_din_ratio"] = round(out["msd"] / out["din"], 3)
    print(f"in process (no HTTP), median ms per request: {json.dumps(out)}", flush=True)
    return out


def cold(msd: Path, bodies: list[bytes]) -> list[dict]:
    """Each item's first request: no Redis, an empty LRU, every vector computed by the student (1 client)."""
    print("scenario cold: starting", flush=True)
    group = Servers(msd=["--model", str(msd)])
    try:
        tally = Tally()
        run_block(group.ports["msd"], bodies, 1, tally)
        return rows_of("cold", {"msd": tally.summary(1)})
    finally:
        group.stop()


def windows(tally: Tally, seconds: float, width: float = 5.0) -> list[dict]:
    """Per `width`-second window of a timed run: requests answered and the hit rate."""
    out = []
    for start in np.arange(0, seconds, width):
        inside = [a for t, _, a in tally.answers if start <= t < start + width]
        counts = {k: sum(a["cache"][k] for a in inside) for k in ("lru", "redis", "computed")}
        lookups = sum(counts.values())
        out.append({"from_s": float(start), "requests": len(inside),
                    "hit_rate": round((counts["lru"] + counts["redis"]) / lookups, 3) if lookups else None})
    return out


def faults(msd: Path, redis: RedisServer, bodies: list[bytes], seconds: float, stop_at: float, start_at: float,
           clients: int = 8) -> dict:
    """Redis killed during a timed load run and started again (empty): failures, scores, hit rate over time.

    The reference is each body's first answer with Redis empty and the LRU off: every vector computed by the
    student, the no-cache path."""
    print(f"scenario faults: {seconds:.0f} s at {clients} clients, Redis killed at {stop_at:.0f} s, back at "
          f"{start_at:.0f} s", flush=True)
    flush(redis.url)
    group = Servers(msd=["--model", str(msd), "--redis", redis.url, "--lru-size", "0", "--redis-retry-s", "1"])
    try:
        first = Tally()
        run_block(group.ports["msd"], bodies, 1, first)
        reference = {i: a["scores"] for _, i, a in first.answers}
        tally, origin = Tally(), time.monotonic()
        timers = [threading.Timer(stop_at, redis.stop), threading.Timer(start_at, redis.start)]
        for timer in timers:
            timer.start()
        run_block(group.ports["msd"], bodies, clients, tally, until=origin + seconds, origin=origin)
        for timer in timers:
            timer.join()
    finally:
        group.stop()
    diff = max(float(np.abs(np.subtract(a["scores"], reference[i])).max()) for _, i, a in tally.answers)
    out = {**tally.summary(clients), "seconds": seconds, "redis_stopped_at_s": stop_at, "redis_started_at_s": start_at,
           "max_abs_diff_vs_no_cache": diff, "windows": windows(tally, seconds), "load_avg_1m": os.getloadavg()[0]}
    print(json.dumps(out), flush=True)
    return out


def full(msd: Path, redis: RedisServer, bodies: list[bytes], seconds: float, spare_mb: float) -> dict:
    """Redis capped (allkeys-lru) below what the requests need, LRU off: does serving go on?"""
    import redis as client_lib

    client = client_lib.Redis.from_url(redis.url)
    ctr_cli("warm", "--model", str(msd), "--top", "1000000", "--redis", redis.url)
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("maxmemory", int(used - spare_mb * 2**20))  # below what the warmed catalogue takes
    print(f"scenario full: Redis capped at {used / 2**20 - spare_mb:.1f} MiB (warm catalogue {used / 2**20:.1f} MiB)",
          flush=True)
    group = Servers(msd=["--model", str(msd), "--redis", redis.url, "--lru-size", "0"])
    try:
        tally = Tally()
        run_block(group.ports["msd"], bodies, 8, tally, until=time.monotonic() + seconds)
    finally:
        group.stop()
    stats = client.info("stats")
    out = {**tally.summary(8), "seconds": seconds, "maxmemory_mb": round((used / 2**20) - spare_mb, 1),
           "evicted_keys": stats["evicted_keys"], "load_avg_1m": os.getloadavg()[0]}
    client.config_set("maxmemory", "0")
    print(json.dumps(out), flush=True)
    return out


def table(rows: list[dict]) -> str:
    head = (f"{'scenario':<12} {'server':<8} {'clients':>7} {'n':>4} {'fail':>4} {'p50 ms':>9} {'p95 ms':>9} "
            f"{'p99 ms':>9} {'req/s':>8} {'hit rate':>8} {'load':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        hit = "-" if r["hit_rate"] is None else f"{r['hit_rate']:.3f}"
        lines.append(f"{r['scenario']:<12} {r['server']:<8} {r['clients']:>7} {r['requests']:>4} {r['failures']:>4} "
                     f"{r['p50_ms']:>9.2f} {r['p95_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['rps']:>8.2f} {hit:>8} "
                     f"{r['load_avg_1m']:>5.2f}")
    return "\n".join(lines)


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--knowledge", type=Path, default=DEFAULT_KNOWLEDGE)
    p.add_argument("--work", type=Path, default=Path("/work/runs/serve26"))
    p.add_argument("--din", type=Path, default=None, help="a DIN run folder (default: --work/din, trained if absent)")
    p.add_argument("--msd", type=Path, default=None, help="an MSD run folder (default: --work/msd, trained if absent)")
    p.add_argument("--elec", type=Path, default=None, help="an ELEC run folder: its vanilla network paired with DIN")
    p.add_argument("--requests", type=int, default=200, help="requests per server and client count")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--block", type=int, default=20, help="requests per block of the paired measurement")
    p.add_argument("--cold-requests", type=int, default=3)
    p.add_argument("--fault-seconds", type=float, default=60.0)
    p.add_argument("--fault-bodies", type=int, default=4, help="distinct requests cycled in the fault run")
    p.add_argument("--train-rows", type=int, default=50_000, help="train rows of the runs the bench trains")
    p.add_argument("--skip", default="", help="comma list of scenarios to leave out")
    p.add_argument("--note", default="", help="what else the machine was doing, recorded with the figures (the "
                   "load average is recorded either way)")
    return p.parse_args()


def main() -> None:
    args = arguments()
    load_at_start = round(os.getloadavg()[0], 2)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a killed bench still stops its servers (finally)
    skip, clients = set(args.skip.split(",")), [int(c) for c in args.clients.split(",")]
    din = args.din or ensure_run(args.work, args.data, "din", args.knowledge, args.train_rows)
    msd = args.msd or ensure_run(args.work, args.data, "msd", args.knowledge, args.train_rows)
    mix = request_mix(args.data, args.requests)
    bodies = [json.dumps(b).encode() for b in mix]
    rows, extra = [], {}
    redis = RedisServer(args.work, maxmemory="512mb").start()
    try:
        warmed = json.loads(ctr_cli("warm", "--model", str(msd), "--top", "1000000", "--redis", redis.url))
        print(f"ctr warm (every item): {json.dumps(warmed)}", flush=True)
        din_args = ["--model", str(din)]
        if "warm" not in skip:
            old = (lambda group: rows_of("old-pairing", per_body_pairs(group.ports, bodies, 8))) \
                if "old-pairing" not in skip else None
            rows += side_by_side("warm", {"din": din_args, "msd": ["--model", str(msd), "--redis", redis.url]},
                                 bodies, clients, args.block, extra=old)
        if "raw-path" not in skip:  # issue 26 before/after: MSD adapting raw vectors on every request beside
            msd_args = ["--model", str(msd), "--redis", redis.url]
            rows += side_by_side("raw-path", {"din": din_args, "msd": msd_args,
                                              "msd-raw": [*msd_args, "--item-path", "raw"]}, bodies, clients[:2],
                                 args.block)
        if "redis" not in skip:
            rows += side_by_side("redis", {"din": din_args, "msd": ["--model", str(msd), "--redis", redis.url,
                                                                    "--lru-size", "0"]}, bodies, clients, args.block)
        if args.elec is not None:
            rows += side_by_side("elec", {"din": din_args, "elec": ["--model", str(args.elec)]}, bodies, clients,
                                 args.block)
        if "scale" not in skip:
            msd_args = ["--model", str(msd), "--redis", redis.url]
            rows += side_by_side("scale", {"1-process": msd_args, "2-workers": [*msd_args, "--workers", "2"]}, bodies,
                                 [32], args.block)
        if "in-process" not in skip:
            extra["in_process"] = in_process(din, msd, mix, redis.url)
        if "cold" not in skip:
            rows += cold(msd, bodies[: args.cold_requests])
        if "faults" not in skip:
            extra["faults"] = faults(msd, redis, bodies[: args.fault_bodies], args.fault_seconds,
                                     args.fault_seconds / 4, args.fault_seconds / 2)
        if "full" not in skip:
            extra["full"] = full(msd, redis, bodies, 15.0, spare_mb=1.0)
    finally:
        redis.stop()
    print(table(rows))
    headline = {label: ratios(rows, label) for label in ("warm", "raw-path", "redis", "old-pairing")}
    print(f"MSD/DIN (p50, p99) = {json.dumps(headline)}; paper 37.2/35 = 1.063; load average {os.getloadavg()}")
    record("serve", {"data": str(args.data), "knowledge": str(args.knowledge), "runs": {"din": str(din), "msd": str(msd)},
                     "request": "user + 20-item history + 100 candidates from the test split",
                     "pairing": "alternating blocks, same requests and concurrency (bench/serve_load.py)",
                     "machine_note": args.note, "load_avg_1m_at_start": load_at_start,
                     "warm": warmed, "rows": rows, "msd_din_ratio": headline, "paper_ratio": round(37.2 / 35, 3),
                     **extra})


if __name__ == "__main__":
    main()
