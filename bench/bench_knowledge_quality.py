"""Teacher answer quality on data/gold: ok rate, key-phrase F1 with intervals, leakage, per answer format.

Generates the embedded teacher's answers for the gold items and users (resumable: re-running reuses them),
scores them against data/gold/gold.jsonl beside the name-words baseline, and records one line per
(level, format) to bench/results/knowledge_quality.jsonl.

    python -m bench.bench_knowledge_quality --variants json-span text --levels item user --out /work/runs/knowledge
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.common import record

from eval.baselines import baseline_records
from eval.embedder import Embedder
from eval.f1_report import evaluate_f1
from ground.files import write_jsonl
from ground import records as R
from kgen.generate import GenerateConfig, generate_knowledge
from kgen.grounding import grounding_metrics
from kgen.reference import reference_texts
from kgen.run import reparse_record
from kgen.teachers.base import GenerationSettings

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "data" / "gold" / "gold.jsonl"
SAMPLE = ROOT / "data" / "sample"


def gold_inputs(out: Path) -> dict[str, Path]:
    """The sample's item and user rows whose ids have gold, written under `out`."""
    gold = R.read_records(GOLD, "gold")
    ids = {lv: {str(g[R.ID]) for g in gold if g[R.LEVEL] == lv} for lv in R.LEVELS}
    items = [r for r in R.read_records(SAMPLE / "items.jsonl", "item") if str(r[R.ITEM_ID]) in ids["item"]]
    users = [r for r in R.read_records(SAMPLE / "users.jsonl", "user") if str(r[R.USER_ID]) in ids["user"]]
    paths = {"item": out / "gold_items.jsonl", "user": out / "gold_users.jsonl"}
    write_jsonl(paths["item"], items)
    write_jsonl(paths["user"], users)
    return paths


def macro(report: dict) -> dict:
    head = report["headline"]["macro"]
    return {"f1": round(head["f1"], 4), "f1_ci95": [round(x, 4) for x in head["f1_ci95"]],
            "precision": round(head["precision"], 4), "recall": round(head["recall"], 4),
            "n": report["headline"]["n_items"]}


def score(pred: list[dict], level: str, embedder: Embedder, ids: set[str] | None = None) -> dict:
    gold = [g for g in R.read_records(GOLD, "gold") if ids is None or str(g[R.ID]) in ids]
    return macro(evaluate_f1(pred, gold, embedder, level=level, seed=0))


def quality(rows: list[dict], level: str, embedder: Embedder, ids: set[str] | None = None) -> dict:
    """Ok rate, leakage and F1 (as generated, and with leaked key phrases dropped) of one variant's records."""
    rows = [r for r in rows if ids is None or str(r[R.ID]) in ids]
    status = {s: n for s in R.STATUSES if (n := sum(r[R.STATUS] == s for r in rows))}
    return {"records": len(rows), "ok_rate": round(status.get("ok", 0) / len(rows), 4), "status": status,
            "completion_tokens_mean": round(sum(r[R.USAGE]["completion_tokens"] for r in rows) / len(rows), 1),
            **grounding_metrics(rows), "f1": score(rows, level, embedder, ids),
            "f1_dropping_leaked": score(without_leaked(rows), level, embedder, ids)}


def compare_existing(level: str, variants: list[str], out: Path, embedder: Embedder) -> None:
    """Score the variants' stored answers on the gold ids every one of them has answered (a paired comparison)."""
    rows = {v: regrounded(R.read_records(out / f"{level}_{v}.jsonl", "knowledge")) for v in variants}
    ids = set.intersection(*({str(r[R.ID]) for r in rs} for rs in rows.values()))
    gold = [g for g in R.read_records(GOLD, "gold") if str(g[R.ID]) in ids]
    baseline = score(baseline_records(gold), level, embedder, ids)
    for variant, rs in rows.items():
        record("knowledge_quality", {"level": level, "variant": variant, "paired_on_common_ids": len(ids),
                                     **quality(rs, level, embedder, ids), "baseline_name_words": baseline,
                                     "teacher": "embedded SmolLM2-135M", "note": "shared 2-core machine"})


def regrounded(rows: list[dict]) -> list[dict]:
    """The records re-parsed with this checkout's parser and grounding (answers made before a fix are scored alike)."""
    examples = reference_texts()
    return [reparse_record(r, examples.get(r.get(R.REFERENCE_ID), "")) for r in rows]


def without_leaked(rows: list[dict]) -> list[dict]:
    """The answers with their leaked key phrases dropped (the 'drop leaked phrases' option, measured offline)."""
    return [{**r, R.KEY_PHRASES: [p for p in r[R.KEY_PHRASES] if p not in r.get(R.LEAKED, [])]} for r in rows]


# variant -> (answer format, reference example, explicit values constrained to input spans)
VARIANTS = {"text": ("text", "nearest", False), "json-span": ("json", "nearest", True),
            "json-span-noref": ("json", "none", True), "json-free": ("json", "nearest", False)}


def run(level: str, variant: str, inputs: Path, out: Path, max_new_tokens: int | None, embedder: Embedder,
        limit: int | None) -> dict:
    fmt, reference, spans = VARIANTS[variant]
    output = out / f"{level}_{variant}.jsonl"
    settings = GenerationSettings(max_new_tokens=max_new_tokens, answer_format=fmt, explicit_spans=spans)
    info = generate_knowledge(GenerateConfig(level=level, input=inputs, output=output, items=SAMPLE / "items.jsonl",
                                             settings=settings, reference=reference, limit=limit))
    rows = R.read_records(output, "knowledge")
    return {"level": level, "limit": limit, "variant": variant, "answer_format": fmt, "reference": reference,
            "max_new_tokens": settings.max_new_tokens, "tokens_per_s": info["metrics"].get("tokens_per_s"),
            **quality(rows, level, embedder)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variants", nargs="+", default=list(VARIANTS),
                   help=f"to generate: {', '.join(VARIANTS)}; with --compare-existing, any <level>_<name>.jsonl under --out")
    p.add_argument("--limit", type=int, default=None, help="only the first N gold inputs (a smoke run)")
    p.add_argument("--levels", nargs="+", default=["item", "user"])
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the format's (kgen default_max_new_tokens)")
    p.add_argument("--out", type=Path, default=Path("/work/runs/knowledge"))
    p.add_argument("--compare-existing", action="store_true",
                   help="generate nothing: score the stored answers of --variants on the ids all of them have")
    a = p.parse_args()
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    embedder = Embedder()
    if a.compare_existing:
        for level in a.levels:
            compare_existing(level, a.variants, a.out, embedder)
        return
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    inputs = gold_inputs(a.out)
    gold = R.read_records(GOLD, "gold")
    for level in a.levels:
        baseline = score(baseline_records(gold), level, embedder)
        for variant in a.variants:
            row = run(level, variant, inputs[level], a.out, a.max_new_tokens, embedder, a.limit)
            record("knowledge_quality", {**row, "baseline_name_words": baseline, "teacher": "embedded SmolLM2-135M",
                                         "note": "shared 2-core machine"})


if __name__ == "__main__":
    main()
