"""Shared bits of the benchmarks: machine facts and appending a result line."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from ground.runinfo import peak_rss_mb  # noqa: F401  (the bench scripts take it from here)

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]}


def record(name: str, figures: dict) -> Path:
    """Append one JSON line of figures to bench/results/<name>.jsonl and print it."""
    RESULTS.mkdir(exist_ok=True)
    line = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **figures}
    path = RESULTS / f"{name}.jsonl"
    with path.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    print(json.dumps(line, indent=2))
    return path
