"""What denormal weights cost a CTR model's matrix products on CPU, with and without flushing them to zero.

    python -m bench.ctr_denormals RUN/model.pt [--layers dnn.0.weight dnn.3.weight]

Times 50 forward passes of a batch of 1024 through two of the run's MLP layers, flush-to-zero off and on (in
alternation, twice each), counts the denormal weights, and appends the figures to bench/results/ctr.jsonl.
`ctr train` flushes denormals (ctr/train.py: flush_denormals).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.common import record

TINY = 1.1754944e-38  # the smallest normal float32


def timed(x: torch.Tensor, weights: list[torch.Tensor], repeats: int = 50) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        h = x
        for w in weights:
            h = torch.relu(h @ w.T)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--layers", nargs="+", default=["dnn.0.weight", "dnn.3.weight"])
    a = p.parse_args()
    torch.set_num_threads(1)
    state = torch.load(a.model, map_location="cpu", weights_only=False)
    state = state.get("model", state)
    weights = [state[name].float() for name in a.layers]
    denormal = sum(int(((w != 0) & (w.abs() < TINY)).sum()) for w in weights)
    x = torch.randn(1024, weights[0].shape[1])
    timed(x, weights)  # warm-up
    seconds = {"off": [], "on": []}
    for flush in (False, True, False, True):
        torch.set_flush_denormal(flush)
        seconds["on" if flush else "off"].append(round(timed(x, weights), 3))
    figures = {"table": "denormals", "model": str(a.model), "layers": a.layers, "denormal_weights": denormal,
               "weights": sum(w.numel() for w in weights), "seconds_50_batches": seconds,
               "slowdown": round(min(seconds["off"]) / min(seconds["on"]), 2)}
    print(figures)
    record("ctr", figures)


if __name__ == "__main__":
    main()
