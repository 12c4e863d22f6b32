"""Keep a finished catalogue knowledge run under bench/knowledge/ so CTR runs never regenerate it (issue 24).

    python -m bench.knowledge_records RUN.jsonl --name ml-1m/items [--command "kgen generate ..."]

writes bench/knowledge/<name>.jsonl.gz (the records, gzipped; `distill embed --knowledge` reads .jsonl.gz) and
bench/knowledge/<name>.json: the run's config and metrics (kgen's RUN.run.json), the record and status counts,
the wall time, the machine, the code's commit and the command, so a figure built on them can say where they came
from, and where the implicit values came from (copied from the one-shot example, repeating the input, or the
model's own). Refuses a run with rows still missing from its input (an unfinished run) unless --partial says so.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
from collections import Counter
from pathlib import Path

from ground import records as R
from ground.files import write_json
from ground.runinfo import machine

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "knowledge"


def commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def implicit_sources(rows: list[dict]) -> dict[str, int]:
    """Where the implicit values came from: copied from the one-shot example (the record's `leaked`), repeating
    the input (a substring of it, case aside), or the model's own. Each value counted once, in that order."""
    out = Counter({"total": 0, "copied_from_example": 0, "repeat_input": 0, "own": 0})
    for r in rows:
        text, leaked = r[R.INPUT].lower(), {v.lower() for v in r.get(R.LEAKED) or []}
        for item in r.get(R.IMPLICIT) or []:
            value = item["value"].lower()
            out["total"] += 1
            out["copied_from_example" if value in leaked else "repeat_input" if value in text else "own"] += 1
    return dict(out)


def keep(run: Path, name: str, command: str, partial: bool, out: Path = OUT) -> dict:
    rows = R.read_records(run, "knowledge")
    info = json.loads(Path(f"{run.with_suffix('')}.run.json").read_text())
    inputs = sum(1 for line in Path(info["config"]["input"]).read_text().splitlines() if line.strip())
    if len(rows) < inputs and not partial:
        raise SystemExit(f"{run}: {len(rows)} records for {inputs} inputs: the run is not finished (--partial keeps "
                         "it anyway, and says so)")
    target = out / f"{name}.jsonl.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(target, "wt", encoding="utf-8", compresslevel=9) as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    manifest = {"records": len(rows), "inputs": inputs, "complete": len(rows) >= inputs,
                "status": dict(Counter(r[R.STATUS] for r in rows)),
                "mean_key_phrases": round(sum(len(r[R.KEY_PHRASES]) for r in rows) / max(len(rows), 1), 2),
                "implicit_values": implicit_sources(rows),
                "run": info, "command": command, "commit": commit(), "machine": machine(),
                "file": str(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target), "bytes": target.stat().st_size}
    write_json(out / f"{name}.json", manifest)
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="The knowledge JSONL a `kgen generate` (or `distill generate`) run wrote.")
    p.add_argument("--name", required=True, help="Where under bench/knowledge/, e.g. ml-1m/items.")
    p.add_argument("--command", default="", help="The command that made it (stated in the manifest).")
    p.add_argument("--partial", action="store_true", help="Keep an unfinished run (the manifest says so).")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    m = keep(a.run, a.name, a.command, a.partial, a.out)
    print(json.dumps({k: m[k] for k in ("records", "inputs", "complete", "status", "mean_key_phrases",
                                        "implicit_values", "file", "bytes")}))


if __name__ == "__main__":
    main()
