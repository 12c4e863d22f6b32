"""Where a warm-cache MSD request spends its time next to DIN's, in process (no HTTP): `Served.score` only.

    python -m bench.profile_serve [--din RUN --msd RUN] [--requests 100] [--code DIR]

Both runs are loaded in one process (torch 1 thread). A throw-away redis-server is filled by `ctr warm` (every
catalogue item, from the run's tables: the student is not loaded; without redis-server installed, or with
--no-redis, the first pass computes every vector with the student: minutes on one core), then the bench's request
mix (a user with a 20-item history and 100 candidates from the test split) is scored once to warm MSD's
in-process cache from it; then each request is scored by DIN and by MSD in turn (the order alternating), so the two
see the same machine load: p25 and p50 ms per request and their ratios (--rounds passes). With issue 26's code a third server
scores MSD along its old path (`item_path="raw"`: raw vectors adapted on every request) beside them. A cProfile pass of each then gives
the per-request breakdown: the cumulative ms of each function `Served.score` calls (and, one level
down, of what MSD's vector step and the model's forward call). cProfile's own overhead inflates
every figure, Python-heavy stages most; the timed pass has none.

--code DIR imports ctr/ from another checkout (e.g. the code before a change) for a before/after.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.bench_serve import DEFAULT_DATA, request_mix

ROOT = Path(__file__).resolve().parents[1]


def timed_pass(served: dict, mix: list[dict], scores: dict | None = None) -> dict[str, list[float]]:
    """ms per request of each server, the servers taking turns on each request (order alternating); each
    server's scores appended to `scores` when given."""
    times = {name: [] for name in served}
    names = list(served)
    for i, body in enumerate(mix):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            out = served[name].score(body["user_id"], body["history"], body["candidates"])
            times[name].append((time.perf_counter() - start) * 1000)
            if scores is not None:
                scores.setdefault(name, []).extend(out["scores"])
    return times


def callees(stats: pstats.Stats, parent: str, n: int) -> dict[str, float]:
    """ms per request under each function called by `parent` ("module.function" of ctr/) via that edge."""
    out: dict[str, float] = {}
    module, function = parent.split(".")
    for func, (_, _, _, _, callers) in stats.stats.items():
        for caller, edge in callers.items():
            if caller[2] == function and Path(caller[0]).stem == module and "/ctr/" in caller[0]:
                name = f"{Path(func[0]).stem}.{func[2]}" if func[0] != "~" else func[2]
                out[name] = out.get(name, 0.0) + edge[3] * 1000 / n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def profile(served, mix: list[dict]) -> dict:
    """cProfile one pass: total ms per request and the breakdown one and two levels down."""
    profiler = cProfile.Profile()
    profiler.enable()
    start = time.perf_counter()
    for body in mix:
        served.score(body["user_id"], body["history"], body["candidates"])
    total = (time.perf_counter() - start) * 1000 / len(mix)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rounded = lambda d: {k: round(v, 2) for k, v in d.items() if v >= 0.05}
    parents = ("scoring.score", "scoring.set_vectors", "scoring.adapted_logits", "adapted.__call__",
               "knowledge.forward", "knowledge.knowledge", "din.forward")
    return {"profiled_ms": round(total, 2), **{p: rounded(callees(stats, p, len(mix))) for p in parents}}


@contextmanager
def warmed_redis(msd: Path, enabled: bool):
    """The url of a redis-server holding every catalogue item's vector and row (`ctr warm`), or None."""
    if not enabled or shutil.which("redis-server") is None:
        yield None
        return
    from ctr.scoring import ServeConfig, warm
    from tests.ctr.redis_server import RedisServer

    with tempfile.TemporaryDirectory() as folder:
        redis = RedisServer(Path(folder), maxmemory="512mb").start()
        try:
            warm(ServeConfig(model=str(msd), redis=redis.url), top=10**9)
            yield redis.url
        finally:
            redis.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--din", type=Path, default=Path("/work/runs/serve26/din"))
    p.add_argument("--msd", type=Path, default=Path("/work/runs/serve26/msd"))
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3, help="timed passes over the requests")
    p.add_argument("--code", type=Path, default=ROOT, help="the checkout whose ctr/ is profiled")
    p.add_argument("--no-redis", action="store_true", help="warm by computing every vector with the student")
    args = p.parse_args()
    sys.path.insert(0, str(args.code))
    import torch

    torch.set_num_threads(1)
    with warmed_redis(args.msd, not args.no_redis) as url:
        out = measure(args, url)
    print(json.dumps(out, indent=1))


def measure(args: argparse.Namespace, redis: str | None) -> dict:
    """Load the servers (MSD's warmed from `redis`), time them paired, then profile each."""
    from ctr.scoring import ServeConfig, Served

    mix = request_mix(args.data, args.requests)
    served = {"din": Served(ServeConfig(model=str(args.din))),
              "msd": Served(ServeConfig(model=str(args.msd), redis=redis))}
    if "item_path" in ServeConfig.__dataclass_fields__:  # issue 26: MSD adapting raw vectors on every request
        served["msd-raw"] = Served(ServeConfig(model=str(args.msd), item_path="raw", redis=redis))
    timed_pass(served, mix)  # warms MSD's in-process cache (every vector, the user memo) and both allocators
    scores: dict[str, list[float]] = {}
    times = timed_pass(served, mix, scores)
    for _ in range(args.rounds - 1):
        for name, more in timed_pass(served, mix).items():
            times[name] += more
    same = ({"max_abs_diff_msd_vs_raw_path": float(np.abs(np.subtract(scores["msd"], scores["msd-raw"])).max()),
             "scores_compared": len(scores["msd"])} if "msd-raw" in scores else {})
    # p25 beside p50: on a shared machine a ~2 ms request is often cut by another job's time slice, and the
    # longer server's p50 then lands among the cut ones first; the p25 is the service time without them
    q = {f"p{p}": {name: float(np.percentile(t, p)) for name, t in times.items()} for p in (25, 50)}
    return {"code": str(args.code), "requests": len(mix), "rounds": args.rounds,
            **{f"{p}_ms": {k: round(v, 3) for k, v in by.items()} for p, by in q.items()},
            **{f"msd_din_{p}_ratio": {k: round(v / by["din"], 3) for k, v in by.items() if k != "din"}
               for p, by in q.items()},
            "load_avg": os.getloadavg(), **same,
            "profile": {name: profile(s, mix) for name, s in served.items()}}


if __name__ == "__main__":
    main()
