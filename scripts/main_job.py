"""The main job, end to end on the embedded defaults (`make demo`).

Prepare the bundled sample, sample items and users (stratified by category,
importance-weighted), generate item- and user-level knowledge with the
embedded teacher, and print a short summary. `--scale N` multiplies every
size; the default finishes in about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kgen import records as R
from kgen.generate import GenerateConfig, generate_knowledge
from kgen.sample import SampleConfig, sample_rows
from kgen.teachers.base import GenerationSettings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
GOLD = ROOT / "data" / "gold" / "gold.jsonl"


@dataclass
class MainConfig:
    """Sizes and settings of the main job; every size is multiplied by `scale`."""

    out: Path = ROOT / "runs" / "main"
    scale: int = 1
    train_items: int = 16
    train_users: int = 8
    batch_size: int = 8
    max_new_tokens: int = 256
    teacher: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")

    def n(self, base: int) -> int:
        return base * self.scale


def stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def prepare_sample(cfg: MainConfig) -> dict[str, Path]:
    """Validate the bundled sample and pick the rows the teacher will read (gold ids held out)."""
    items = R.read_records(SAMPLE / "items.jsonl", "item")
    users = R.read_records(SAMPLE / "users.jsonl", "user")
    gold = R.read_records(GOLD, "gold") if GOLD.exists() else []
    held_out = {(g[R.LEVEL], str(g[R.ID])) for g in gold}
    print(f"sample: {len(items)} items, {len(users)} users; {len(held_out)} gold ids held out of training")
    data = cfg.out / "data"
    picked_items = sample_rows([i for i in items if ("item", str(i[R.ITEM_ID])) not in held_out],
                               SampleConfig(n=cfg.n(cfg.train_items), by=R.CATEGORY, allocation="sqrt",
                                            weight=R.EXPOSURES, seed=cfg.seed))
    picked_users = sample_rows([u for u in users if ("user", str(u[R.USER_ID])) not in held_out],
                               SampleConfig(n=cfg.n(cfg.train_users), weight="history_len", seed=cfg.seed))
    paths = {"items": SAMPLE / "items.jsonl", "picked_items": data / "picked_items.jsonl",
             "picked_users": data / "picked_users.jsonl"}
    R.write_jsonl(paths["picked_items"], picked_items)
    R.write_jsonl(paths["picked_users"], picked_users)
    strata = sorted({r[R.STRATUM] for r in picked_items})
    print(f"picked {len(picked_items)} items over {len(strata)} categories, {len(picked_users)} users")
    return paths


def teacher_knowledge(cfg: MainConfig, level: str, input_path: Path, items: Path, output: Path) -> dict:
    """Generate one level's knowledge with the teacher (resumes if the output exists)."""
    settings = GenerationSettings(max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    config = GenerateConfig(level, input_path, output, cfg.teacher, items, batch_size=cfg.batch_size, settings=settings)
    return generate_knowledge(config)["metrics"]


def summarise(path: Path) -> dict:
    """Status counts and the first answers' key phrases of a knowledge file."""
    rows = R.read_records(path, "knowledge")
    ok = [r for r in rows if r[R.STATUS] == "ok"]
    return {"records": len(rows), "ok": len(ok),
            "status": {s: sum(r[R.STATUS] == s for r in rows) for s in R.STATUSES if any(r[R.STATUS] == s for r in rows)},
            "mean_key_phrases_ok": round(sum(len(r[R.KEY_PHRASES]) for r in ok) / max(len(ok), 1), 2),
            "examples": [{"input": r[R.INPUT][:60], "key_phrases": r[R.KEY_PHRASES][:8]} for r in ok[:3]]}


def main(cfg: MainConfig) -> dict:
    metrics: dict = {}
    t0 = time.perf_counter()
    t = stage("1. sample: validate the bundled sample, stratified + importance sampling")
    paths = prepare_sample(cfg)
    metrics["sample_s"] = round(time.perf_counter() - t, 1)
    for level in ("item", "user"):
        t = stage(f"2. teacher: {level}-level knowledge with the embedded teacher")
        out = cfg.out / "knowledge" / f"teacher_{level}.jsonl"
        metrics[f"teacher_{level}"] = teacher_knowledge(cfg, level, paths[f"picked_{level}s"], paths["items"], out)
        metrics[f"teacher_{level}_summary"] = summarise(out)
    metrics["total_s"] = round(time.perf_counter() - t0, 1)
    R.write_json(cfg.out / "run.json", {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
                                        "metrics": metrics})
    print_summary(metrics, cfg)
    return metrics


def print_summary(metrics: dict, cfg: MainConfig) -> None:
    print("\n== summary")
    for level in ("item", "user"):
        s, m = metrics[f"teacher_{level}_summary"], metrics[f"teacher_{level}"]
        print(f"teacher {level}: {s['records']} records, {s['ok']} ok, status {s['status']}, "
              f"{m.get('tokens_per_s', 0)} tok/s, mean {s['mean_key_phrases_ok']} key phrases")
        for ex in s["examples"]:
            print(f"  {ex['input']!r} -> {', '.join(ex['key_phrases'])}")
    print(f"total {metrics['total_s']} s; config and metrics in {cfg.out / 'run.json'}")


def parse_args() -> MainConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=1, help="multiply every size (default 1: ~15 min on 2 CPU cores)")
    p.add_argument("--out", type=Path, default=MainConfig.out)
    p.add_argument("--teacher", default=None, help="backend:model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    return MainConfig(out=a.out, scale=a.scale, teacher=a.teacher, seed=a.seed)


if __name__ == "__main__":
    print(json.dumps({"started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    main(parse_args())
