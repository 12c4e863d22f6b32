"""What a run records about itself beside its outputs, and what a benchmark records beside its figures."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)  # bytes on macOS, KiB on Linux


def machine() -> dict:
    """What figures are measured on: cores, CPU model, Python, and the load average at that moment."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]}


def append_result(path: str | Path, figures: dict) -> dict:
    """Append one JSON line (date, machine, figures) to a results file such as bench/results/<name>.jsonl."""
    line = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **figures}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
    return line
