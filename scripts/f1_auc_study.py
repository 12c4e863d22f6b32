"""The F1-vs-AUC study (the MSD paper's Figure 4) on the bundled Online Retail sample, end to end.

1. `ctr prepare` the sample into OUT/prepared (the CTR split every student is scored on);
2. draw the teacher's training items (gold ids held out, shuffled so that every prefix is a mixed draw) and
   generate item knowledge with the teacher once, for the largest size; smaller sizes use prefixes;
3. students of graded quality: the untrained student, and for each size a LoRA student trained without and
   with augmentation (key-phrase shuffling + dictionary substitution);
4. per student: item-level key-phrase F1 against data/gold/ (`distill eval-f1`), `distill embed` over the
   prepared items/users, and MSD (`ctr train --model msd`) on those cached vectors over the same seeds;
5. OUT/points.jsonl (one line per student) and `eval correlate` -> OUT/correlate/.

Default sizes: teacher answers for 32 items (students on the first 8, 16, 32, each without and with
augmentation: 7 students), 24 gold items answered per student, MSD on item vectors (user level with
--user-level), 3 seeds x at most 5 epochs. Every stage is skipped when its output is complete, so an interrupted
run resumes; --only splits the students between processes. Stage times go to OUT/timings.jsonl. The other packages are driven through their command lines (`python -m <pkg>.cli`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ground.files import write_json, write_jsonl  # noqa: E402
from ground import records as R  # noqa: E402
from kgen.models import EMBEDDED_LLM  # noqa: E402
from kgen.sample import SampleConfig, sample_rows  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
GOLD = ROOT / "data" / "gold" / "gold.jsonl"
UNTRAINED = "untrained"


@dataclass(kw_only=True)
class StudyConfig:
    """Sizes and settings of the study; the defaults are the sizes stated in the README."""

    out: Path = ROOT / "runs" / "f1_auc"
    items: list[int] = field(default_factory=lambda: [8, 16, 32])  # teacher answers per trained student
    augment: list[str] = field(default_factory=lambda: ["none", "aug"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # MSD seeds per student
    eval_items: int = 24  # gold items each student answers (the first N item records of the gold file)
    teacher: str | None = None  # backend:model; None = the embedded SmolLM2-135M-Instruct
    student: str = EMBEDDED_LLM
    batch_size: int = 8
    max_new_tokens: int | None = None  # None: the answer format's own limit (kgen.answer_schema.default_max_new_tokens)
    epochs: float = 2.0
    # A 135M student with rank-16 LoRA needs more than the 2e-4 default to pick up the format in a few steps.
    learning_rate: float = 1e-3
    ctr_epochs: int = 5
    # The sample has 19,361 train rows: 19 steps an epoch at ctr's default batch of 1024, after which MSD on the
    # untrained student's vectors stood at val AUC 0.502; 256 gives 76 steps an epoch for the same compute.
    ctr_batch_size: int = 256
    # MSD's user-level vector needs the student to read every user's history (300 texts of up to 256 tokens):
    # ~100 s per batch of 16 on the loaded 2-core machine, the costliest stage; off, MSD uses item vectors only.
    user_level: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if not self.items or min(self.items) < 1:
            raise ValueError(f"items must be positive sizes, got {self.items}")
        if not set(self.augment) <= {"none", "aug"} or not self.augment:
            raise ValueError(f"augment must be a subset of none,aug, got {self.augment}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        for name in ("eval_items", "batch_size", "ctr_epochs", "ctr_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def students(self) -> list[tuple[str, int, str]]:
        """(name, teacher answers, augmentation) of every student, the untrained one first."""
        return [(UNTRAINED, 0, "none")] + [(f"n{n}-{a}", n, a) for n in sorted(self.items) for a in self.augment]


def run_cli(args: list[str], log: Path) -> None:
    """`python -m <args>` from the repo root, its output appended to `log`; a failure stops the study."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(args)}\n")
        fh.flush()
        done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{log}: `{' '.join(args[:2])}` failed with status {done.returncode} (see the log)")


def stage(cfg: StudyConfig, name: str, complete: Path | None, work: Callable[..., None], *args: object) -> None:
    """Run `work(*args)` unless `complete` exists; record the seconds it took in OUT/timings.jsonl."""
    if complete is not None and complete.exists():
        print(f"skip  {name} ({complete.relative_to(cfg.out)} exists)", flush=True)
        return
    print(f"start {name}", flush=True)
    t0 = time.perf_counter()
    work(*args)
    seconds = round(time.perf_counter() - t0, 1)
    print(f"done  {name} in {seconds} s", flush=True)
    with (cfg.out / "timings.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"stage": name, "seconds": seconds, "load_avg_1m": round(os.getloadavg()[0], 2)}) + "\n")


def count_records(path: Path) -> int:
    return len(R.read_records(path, "knowledge")) if path.exists() else 0


def pick_inputs(cfg: StudyConfig) -> None:
    """Teacher training items (gold held out; stratified by category, weighted by exposures, then shuffled so a
    prefix is itself a mixed draw) and the gold items every student answers."""
    items = R.read_records(SAMPLE / "items.jsonl", "item")
    gold = [g for g in R.read_records(GOLD, "gold") if g[R.LEVEL] == "item"][: cfg.eval_items]
    held_out = {str(g[R.ID]) for g in R.read_records(GOLD, "gold") if g[R.LEVEL] == "item"}
    pool = [i for i in items if str(i[R.ITEM_ID]) not in held_out]
    picked = sample_rows(pool, SampleConfig(n=max(cfg.items), by=R.CATEGORY, allocation="sqrt",
                                            weight=R.EXPOSURES, seed=cfg.seed))
    random.Random(cfg.seed).shuffle(picked)
    eval_ids = {str(g[R.ID]) for g in gold}
    data = cfg.out / "data"
    write_jsonl(data / "eval_items.jsonl", [i for i in items if str(i[R.ITEM_ID]) in eval_ids])
    write_jsonl(data / "eval_gold.jsonl", gold)
    write_jsonl(data / "train_items.jsonl", picked)  # written last: its presence marks the stage complete


def teacher_args(cfg: StudyConfig) -> list[str]:
    args = ["kgen.cli", "generate", "--level", "item", "-i", str(cfg.out / "data" / "train_items.jsonl"),
            "-o", str(cfg.out / "teacher" / "items.jsonl"), "--batch-size", str(cfg.batch_size),
            "--seed", str(cfg.seed)]
    return args + token_limit_args(cfg) + (["--teacher", cfg.teacher] if cfg.teacher else [])


def token_limit_args(cfg: StudyConfig) -> list[str]:
    """`--max-new-tokens N` when the study sets a limit; else the commands' own default (the format's limit)."""
    return ["--max-new-tokens", str(cfg.max_new_tokens)] if cfg.max_new_tokens is not None else []


def write_prefix(cfg: StudyConfig, n: int) -> Path:
    """The teacher's answers to the first n training items (in the shuffled draw order)."""
    order = [str(i[R.ITEM_ID]) for i in R.read_records(cfg.out / "data" / "train_items.jsonl", "item")][:n]
    by_id = {str(r[R.ID]): r for r in R.read_records(cfg.out / "teacher" / "items.jsonl", "knowledge")}
    path = cfg.out / "teacher" / f"items_first{n}.jsonl"
    write_jsonl(path, [by_id[i] for i in order if i in by_id])
    return path


def train_student(cfg: StudyConfig, name: str, n: int, augment: str) -> None:
    """build-data from the first n teacher answers, then LoRA SFT of the student."""
    sft, model = cfg.out / "sft" / name, cfg.out / "students" / name
    log = cfg.out / "logs" / f"{name}.log"
    prefix = write_prefix(cfg, n)
    run_cli(["distill.cli", "build-data", "-k", str(prefix), "-o", str(sft),
             "--augment", "shuffle,dictionary" if augment == "aug" else "", "--shuffle-factor", "1",
             "--dictionary-factor", "1", "--val-fraction", "0.1", "--seed", str(cfg.seed)], log)
    # Batch 4 x 2 accumulation steps: the effective batch of 8 at half the activation memory (as the main job).
    run_cli(["distill.cli", "train", "--data", str(sft), "-o", str(model), "--student", cfg.student, "--lora",
             "--epochs", str(cfg.epochs), "--lr", str(cfg.learning_rate), "--batch-size", "4", "--grad-accum", "2",
               "--seed", str(cfg.seed)], log)


def model_of(cfg: StudyConfig, name: str) -> str:
    return cfg.student if name == UNTRAINED else str(cfg.out / "students" / name)


def score_student(cfg: StudyConfig, name: str) -> None:
    """Stages of one student after training: gold answers, F1, embeddings, MSD over the seeds."""
    model, log = model_of(cfg, name), cfg.out / "logs" / f"{name}.log"
    pred, f1, emb, ctr = (cfg.out / d / name for d in ("pred", "f1", "emb", "ctr"))
    pred_file = pred / "gold_items.jsonl"
    n_eval = len(R.read_records(cfg.out / "data" / "eval_items.jsonl", "item"))
    done_pred = pred_file if count_records(pred_file) >= n_eval else None
    stage(cfg, f"{name}: generate on {n_eval} gold items", done_pred, run_cli,
          ["distill.cli", "generate", "-m", model, "--level", "item", "-i", str(cfg.out / "data" / "eval_items.jsonl"),
           "-o", str(pred_file), "--batch-size", str(cfg.batch_size), *token_limit_args(cfg),
           "--seed", str(cfg.seed)], log)
    stage(cfg, f"{name}: eval-f1", f1 / "f1.json", run_cli,
          ["distill.cli", "eval-f1", "--pred", str(pred_file), "--gold", str(cfg.out / "data" / "eval_gold.jsonl"),
           "-o", str(f1), "--level", "item", "--seed", str(cfg.seed)], log)
    prepared = cfg.out / "prepared"
    users = ["--users", str(prepared / "users.jsonl")] if cfg.user_level else []
    stage(cfg, f"{name}: embed", emb / "embed_config.json", run_cli,
          ["distill.cli", "embed", "-m", model, "--items", str(prepared / "items.jsonl"), *users, "-o", str(emb)], log)
    stage(cfg, f"{name}: MSD over seeds {cfg.seeds}", ctr / "summary.json", run_cli,
          ["ctr.cli", "train", "--data", str(prepared), "--model", "msd", "--knowledge", str(emb), "-o", str(ctr),
           "--epochs", str(cfg.ctr_epochs), "--batch-size", str(cfg.ctr_batch_size),
           "--seeds", ",".join(map(str, cfg.seeds)),
           "--user-level" if cfg.user_level else "--no-user-level"], log)


def point_of(cfg: StudyConfig, name: str, n: int, augment: str) -> dict:
    """One line of points.jsonl: the student's F1 (with its interval) and its MSD test AUC over the seeds."""
    f1 = json.loads((cfg.out / "f1" / name / "f1.json").read_text())["headline"]["macro"]
    ctr = cfg.out / "ctr" / name
    aucs = [json.loads((ctr / f"seed-{s}" / "metrics.json").read_text())["test"]["auc"] for s in cfg.seeds]
    mean = sum(aucs) / len(aucs)
    std = (sum((a - mean) ** 2 for a in aucs) / (len(aucs) - 1)) ** 0.5 if len(aucs) > 1 else 0.0
    return {"name": name, "f1": round(f1["f1"], 4), "f1_ci95": [round(x, 4) for x in f1["f1_ci95"]],
            "auc_mean": round(mean, 5), "auc_std": round(std, 5), "aucs": [round(a, 5) for a in aucs],
            "n_seeds": len(aucs), "seeds": cfg.seeds, "teacher_items": n, "augment": augment,
            "precision": round(f1["precision"], 4), "recall": round(f1["recall"], 4)}


def record_bench(cfg: StudyConfig) -> None:
    """One line in bench/results/f1_auc.jsonl (sizes, stage times, correlation, points); the plot beside it."""
    import shutil

    from bench.common import RESULTS, record

    lines = lambda path: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    timings = lines(cfg.out / "timings.jsonl")
    stats = json.loads((cfg.out / "correlate" / "correlation.json").read_text())
    config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    record("f1_auc", {"config": config, "stage_seconds_total": round(sum(t["seconds"] for t in timings), 1),
                      "timings": timings, "pearson": stats["pearson"], "spearman": stats["spearman"],
                      "points": lines(cfg.out / "points.jsonl")})
    shutil.copyfile(cfg.out / "correlate" / "f1_auc.png", RESULTS / "f1_auc.png")


def main(cfg: StudyConfig, only: list[str] | None = None, record: bool = False) -> None:
    cfg.out.mkdir(parents=True, exist_ok=True)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    write_json(cfg.out / "study_config.json", config)
    prepared = cfg.out / "prepared"
    stage(cfg, "ctr prepare", prepared / "card.json", run_cli,
          ["ctr.cli", "prepare", "--dataset", "sample", "--raw", str(SAMPLE), "-o", str(prepared)],
          cfg.out / "logs" / "prepare.log")
    stage(cfg, "pick inputs", cfg.out / "data" / "train_items.jsonl", pick_inputs, cfg)
    teacher_out = cfg.out / "teacher" / "items.jsonl"
    done_teacher = teacher_out if count_records(teacher_out) >= max(cfg.items) else None
    stage(cfg, f"teacher: {max(cfg.items)} items", done_teacher,
          run_cli, teacher_args(cfg), cfg.out / "logs" / "teacher.log")
    for name, n, augment in cfg.students():
        if only and name not in only:
            continue
        if name != UNTRAINED:
            stage(cfg, f"{name}: build-data + LoRA train", cfg.out / "students" / name / "metrics.json",
                  train_student, cfg, name, n, augment)
        score_student(cfg, name)
    # Every finished student, also those another process (--only) ran; the last process to end writes them all.
    points = [point_of(cfg, *s) for s in cfg.students() if (cfg.out / "ctr" / s[0] / "summary.json").exists()
              and (cfg.out / "f1" / s[0] / "f1.json").exists()]
    write_jsonl(cfg.out / "points.jsonl", points)
    if len(points) < 3:
        print(f"{len(points)} finished students so far: the correlation needs 3")
        return
    stage(cfg, "eval correlate", None, run_cli,
          ["eval.cli", "correlate", "--points", str(cfg.out / "points.jsonl"), "-o", str(cfg.out / "correlate")],
          cfg.out / "logs" / "correlate.log")
    print((cfg.out / "correlate" / "table.md").read_text())
    if record:
        record_bench(cfg)


def parse_args() -> tuple[argparse.Namespace, StudyConfig]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]
    d = StudyConfig()
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument("--items", type=ints, default=d.items, help="teacher answers per trained student, comma list")
    p.add_argument("--augment", type=lambda t: [x for x in t.split(",") if x], default=d.augment,
                   help="none, aug or none,aug (default both)")
    p.add_argument("--seeds", type=ints, default=d.seeds, help="MSD seeds per student, comma list")
    p.add_argument("--eval-items", type=int, default=d.eval_items, help="gold items each student answers")
    p.add_argument("--teacher", default=None, help="backend:model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--student", default=d.student, help="student base: hub id, folder or the embedded alias")
    p.add_argument("--epochs", type=float, default=d.epochs, help="LoRA SFT epochs")
    p.add_argument("--ctr-epochs", type=int, default=d.ctr_epochs, help="MSD epochs (early stopping on val AUC)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="generation batch size")
    p.add_argument("--ctr-batch-size", type=int, default=d.ctr_batch_size, help="MSD training batch size")
    p.add_argument("--user-level", action="store_true",
                   help="MSD with the user-level vector too (embeds every user's history with each student: slow)")
    p.add_argument("--only", type=lambda t: [x for x in t.split(",") if x], default=None,
                   help="run only these students (names as in points.jsonl), e.g. to split the work between "
                        "processes; shared stages run first either way")
    p.add_argument("--record", action="store_true", help="append the result to bench/results/f1_auc.jsonl")
    a = p.parse_args()
    cfg = StudyConfig(out=a.out, items=a.items, augment=a.augment, seeds=a.seeds, eval_items=a.eval_items,
                      teacher=a.teacher, student=a.student, epochs=a.epochs, ctr_epochs=a.ctr_epochs,
                      batch_size=a.batch_size, ctr_batch_size=a.ctr_batch_size, user_level=a.user_level)
    unknown = sorted(set(a.only or []) - {name for name, _, _ in cfg.students()})
    if unknown:
        p.error(f"--only: no student named {unknown[0]!r}; students: {', '.join(n for n, _, _ in cfg.students())}")
    return a, cfg


if __name__ == "__main__":
    args, config = parse_args()
    main(config, args.only, args.record)
