"""The main job, end to end on the bundled sample (`make demo`): pipeline/demo.py says what it runs.

`--scale N` multiplies every size; the default finishes in about 11 minutes on 2 idle CPU cores. Re-running
resumes: every finished step is skipped. A flag left out takes DemoConfig's default.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kgen.answer_schema import ANSWER_FORMATS
from pipeline.demo import DemoConfig, run_demo

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> DemoConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)
    p.add_argument("--scale", type=int, help="multiply every size (default 1: ~11 min on 2 CPU cores)")
    p.add_argument("--out", type=Path, help="output folder (default runs/main)")
    p.add_argument("--teacher", help="backend:model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--student", help="student base: hub id, path, or the embedded alias")
    p.add_argument("--seed", type=int)
    p.add_argument("--answer-format", choices=ANSWER_FORMATS,
                   help="the teacher's and the student's answer format (default json: constrained to "
                        "kgen/answer_schema.py)")
    flags = {"out": ROOT / "runs" / "main", **vars(p.parse_args())}
    try:
        return DemoConfig(sample=ROOT / "data" / "sample", gold=ROOT / "data" / "gold" / "gold.jsonl", **flags)
    except ValueError as e:
        p.error(str(e))


if __name__ == "__main__":
    config = parse_args()
    print(json.dumps({"started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    run_demo(config)
