"""Where the benchmarks record their figures: one JSON line a result in bench/results/<name>.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from ground.runinfo import append_result

RESULTS = Path(__file__).resolve().parent / "results"


def record(name: str, figures: dict) -> Path:
    """Append one JSON line of figures (with the date and the machine) to bench/results/<name>.jsonl and print it."""
    path = RESULTS / f"{name}.jsonl"
    print(json.dumps(append_result(path, figures), indent=2))
    return path
