"""`ctr serve --workers 2`: two processes on one port sharing one Redis answer as one in-process server does."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from ctr.scoring import ServeConfig, Served
from redis_server import free_port
from test_serve import ROOT, a_request, msd_history_run, redis_server, student_knowledge, wait_healthy  # noqa: F401



def test_two_workers_share_one_port_and_one_redis(msd_history_run, prepared, redis_server):  # noqa: F811
    import httpx
    import redis

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ctr.cli", "serve", "--model", str(msd_history_run), "--port",
                                str(port), "--threads", "1", "--workers", "2", "--redis", redis_server.url], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    try:
        assert wait_healthy(port, process) == {"status": "ok", "model": "msd", "redis": True}
        bodies = [a_request(prepared, 2 + k % 5, 3 + k % 4) for k in range(12)]
        served = Served(ServeConfig(model=str(msd_history_run)))
        for body in bodies:  # a fresh connection each: the kernel spreads them over the workers
            answer = httpx.post(f"http://127.0.0.1:{port}/score", json=body, timeout=300).json()  # a miss loads the student
            np.testing.assert_allclose(answer["scores"], served.score(**body)["scores"], rtol=0, atol=2e-3)
        assert redis.Redis.from_url(redis_server.url).dbsize() > 0  # the workers' write-back went to the shared Redis
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2  # the workers
    finally:
        process.terminate()
        process.wait(timeout=30)
