"""The F1-vs-AUC study (the MSD paper's Figure 4) on the bundled Online Retail sample, end to end.

1. `ctr prepare` the sample into OUT/prepared (the CTR split every student is scored on);
2. draw the teacher's training items (gold ids held out, shuffled so that every prefix is a mixed draw) and
   generate item knowledge with the teacher once, for the largest size; smaller sizes use prefixes;
3. students of graded quality: the untrained student, and for each size a LoRA student trained without and
   with augmentation (key-phrase shuffling + dictionary substitution);
4. per student: item-level key-phrase F1 against the gold, the student's vectors of the prepared items (and
   users), and MSD on those cached vectors over the same seeds;
5. OUT/points.jsonl (one line per student) and the correlation report in OUT/correlate/.

Every step is resumable (pipeline/steps.py), so an interrupted run resumes, and `only` splits the students
between processes; each step's seconds are in its step record, gathered into OUT/timings.jsonl.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from ctr.raw import PrepareConfig
from ctr.train_config import CTRConfig
from distill.data import DataConfig
from distill.embed import EmbedConfig
from distill.student_config import StudentConfig
from distill.train_config import TrainConfig
from eval.correlate import TABLE_MD, write_report
from eval.embedder import Embedder
from ground import records as R
from ground.config import config_dict
from ground.files import write_json, write_jsonl
from kgen.generate import GenerateConfig
from kgen.sample import SampleConfig, sample_rows
from pipeline import steps
from pipeline.steps import SMALL_STUDENT_EPOCHS, SMALL_STUDENT_LEARNING_RATE, default_of

UNTRAINED = "untrained"
AUGMENT = {"none": (), "aug": ("shuffle", "dictionary")}


@dataclass(kw_only=True)
class StudyConfig:
    """Sizes and settings of the study; the defaults are the sizes stated in docs/results.md."""

    sample: Path  # the bundled sample (items.jsonl, users.jsonl, interactions.jsonl)
    gold: Path
    out: Path
    items: list[int] = field(default_factory=lambda: [8, 16, 32])  # teacher answers per trained student
    augment: list[str] = field(default_factory=lambda: ["none", "aug"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # MSD seeds per student
    eval_items: int = 24  # gold items each student answers (the first N item records of the gold file)
    teacher: str | None = default_of(GenerateConfig, "teacher")
    student: str = default_of(TrainConfig, "student")
    batch_size: int = default_of(StudentConfig, "batch_size")  # generation batch size, teacher and students
    epochs: float = SMALL_STUDENT_EPOCHS
    learning_rate: float = SMALL_STUDENT_LEARNING_RATE
    ctr_epochs: int = 5
    # The sample has 19,361 train rows: 19 steps an epoch at ctr's default batch of 1024, after which MSD on the
    # untrained student's vectors stood at val AUC 0.502; 256 gives 76 steps an epoch for the same compute.
    ctr_batch_size: int = 256
    # MSD's user-level vector needs the student to read every user's history (300 texts of up to 256 tokens):
    # ~100 s per batch of 16 on the loaded 2-core machine, the costliest stage; off, MSD uses item vectors only.
    user_level: bool = False
    seed: int = default_of(TrainConfig, "seed")

    def __post_init__(self) -> None:
        self.sample, self.gold, self.out = Path(self.sample), Path(self.gold), Path(self.out)
        if not self.items or min(self.items) < 1:
            raise ValueError(f"items must be positive sizes, got {self.items}")
        if not set(self.augment) <= set(AUGMENT) or not self.augment:
            raise ValueError(f"augment must be a subset of {','.join(AUGMENT)}, got {self.augment}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        for name in ("eval_items", "batch_size", "ctr_epochs", "ctr_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def students(self) -> list[tuple[str, int, str]]:
        """(name, teacher answers, augmentation) of every student, the untrained one first."""
        return [(UNTRAINED, 0, "none")] + [(f"n{n}-{a}", n, a) for n in sorted(self.items) for a in self.augment]


def pick_inputs(cfg: StudyConfig) -> dict:
    """Teacher training items (gold held out; stratified by category, weighted by exposures, then shuffled so a
    prefix is itself a mixed draw) and the gold items every student answers."""
    items = R.read_records(cfg.sample / "items.jsonl", "item")
    item_gold = [g for g in R.read_records(cfg.gold, "gold") if g[R.LEVEL] == "item"]
    gold = item_gold[: cfg.eval_items]
    held_out = {str(g[R.ID]) for g in item_gold}
    pool = [i for i in items if str(i[R.ITEM_ID]) not in held_out]
    picked = sample_rows(pool, SampleConfig(n=max(cfg.items), by=R.CATEGORY, allocation="sqrt",
                                            weight=R.EXPOSURES, seed=cfg.seed))
    random.Random(cfg.seed).shuffle(picked)
    eval_ids = {str(g[R.ID]) for g in gold}
    data = cfg.out / "data"
    write_jsonl(data / "eval_items.jsonl", [i for i in items if str(i[R.ITEM_ID]) in eval_ids])
    write_jsonl(data / "eval_gold.jsonl", gold)
    write_jsonl(data / "train_items.jsonl", picked)
    return {"train_items": len(picked), "eval_items": len(eval_ids)}


def write_prefix(cfg: StudyConfig, n: int) -> Path:
    """The teacher's answers to the first n training items (in the shuffled draw order)."""
    order = [str(i[R.ITEM_ID]) for i in R.read_records(cfg.out / "data" / "train_items.jsonl", "item")][:n]
    by_id = {str(r[R.ID]): r for r in R.read_records(cfg.out / "teacher" / "items.jsonl", "knowledge")}
    path = cfg.out / "teacher" / f"items_first{n}.jsonl"
    write_jsonl(path, [by_id[i] for i in order if i in by_id])
    return path


def train_student(cfg: StudyConfig, name: str, n: int, augment: str) -> None:
    """The SFT data from the first n teacher answers, then LoRA SFT of the student."""
    sft = cfg.out / "sft" / name
    steps.sft_data(DataConfig(knowledge=[write_prefix(cfg, n)], output=sft, augment=AUGMENT[augment],
                              shuffle_factor=1, seed=cfg.seed))
    # Batch 4 x 2 accumulation steps: the optimizer step of 8 examples that the recorded study ran.
    steps.student(TrainConfig(data=str(sft), output=str(cfg.out / "students" / name), student=cfg.student,
                              lora=True, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=4,
                              grad_accum=2, seed=cfg.seed))


def model_of(cfg: StudyConfig, name: str) -> str:
    return cfg.student if name == UNTRAINED else str(cfg.out / "students" / name)


def score_student(cfg: StudyConfig, name: str, embedder: Embedder) -> None:
    """Steps of one student after training: gold answers, F1, vectors, MSD over the seeds."""
    model, data, prepared = model_of(cfg, name), cfg.out / "data", cfg.out / "prepared"
    pred = cfg.out / "pred" / name / "gold_items.jsonl"
    steps.student_answers(StudentConfig(model=model, level="item", input=data / "eval_items.jsonl", output=pred,
                                        batch_size=cfg.batch_size, seed=cfg.seed))
    steps.f1(pred=pred, gold=data / "eval_gold.jsonl", output=cfg.out / "f1" / name, embedder=embedder,
             level="item", seed=cfg.seed)
    emb = cfg.out / "emb" / name
    steps.vectors(EmbedConfig(model=model, items=prepared / "items.jsonl", output=emb,
                              users=prepared / "users.jsonl" if cfg.user_level else None))
    steps.ctr(CTRConfig(data=str(prepared), output=str(cfg.out / "ctr" / name), model="msd", knowledge=str(emb),
                        epochs=cfg.ctr_epochs, batch_size=cfg.ctr_batch_size, user_level=cfg.user_level), cfg.seeds)


def point_of(cfg: StudyConfig, name: str, n: int, augment: str) -> dict:
    """One line of points.jsonl: the student's F1 (with its interval) and its MSD test AUC over the seeds."""
    f1 = json.loads((cfg.out / "f1" / name / steps.F1_JSON).read_text())["headline"]["macro"]
    ctr = cfg.out / "ctr" / name
    aucs = [json.loads((ctr / f"seed-{s}" / "metrics.json").read_text())["test"]["auc"] for s in cfg.seeds]
    mean = sum(aucs) / len(aucs)
    std = (sum((a - mean) ** 2 for a in aucs) / (len(aucs) - 1)) ** 0.5 if len(aucs) > 1 else 0.0
    return {"name": name, "f1": round(f1["f1"], 4), "f1_ci95": [round(x, 4) for x in f1["f1_ci95"]],
            "auc_mean": round(mean, 5), "auc_std": round(std, 5), "aucs": [round(a, 5) for a in aucs],
            "n_seeds": len(aucs), "seeds": cfg.seeds, "teacher_items": n, "augment": augment,
            "precision": round(f1["precision"], 4), "recall": round(f1["recall"], 4)}


def timings(cfg: StudyConfig) -> list[dict]:
    """The seconds of every step under OUT, from the step records (written when the step last ran)."""
    rows = []
    for path in sorted(cfg.out.rglob(f"*{steps.RECORD_SUFFIX}")):
        record = steps.read_record(path)
        output = path.relative_to(cfg.out).as_posix().removesuffix(steps.RECORD_SUFFIX)
        rows.append({"stage": f"{record['step']}: {output}",
                     "seconds": record["seconds"], "load_avg_1m": record["load_avg_1m"], "date": record["date"]})
    return rows


def run_study(cfg: StudyConfig, only: list[str] | None = None) -> dict | None:
    """The study (the students in `only`, else all); the correlation report once 3 students are finished."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_json(cfg.out / "study_config.json", config_dict(cfg))
    prepared, data = cfg.out / "prepared", cfg.out / "data"
    steps.prepare_ctr(PrepareConfig(dataset="sample", raw=cfg.sample, output=prepared, seed=cfg.seed))
    steps.resumable("pick_inputs", data, {"items": max(cfg.items), "eval_items": cfg.eval_items, "seed": cfg.seed},
                    [cfg.sample / "items.jsonl", cfg.gold], lambda: pick_inputs(cfg))
    steps.teacher(GenerateConfig(level="item", input=data / "train_items.jsonl", teacher=cfg.teacher,
                                  output=cfg.out / "teacher" / "items.jsonl", batch_size=cfg.batch_size,
                                  settings=steps.teacher_settings(seed=cfg.seed)))
    embedder = Embedder()
    for name, n, augment in cfg.students():
        if only and name not in only:
            continue
        print(f"\n== {name}", flush=True)
        if name != UNTRAINED:
            train_student(cfg, name, n, augment)
        score_student(cfg, name, embedder)
    # Every finished student, also those another process (`only`) ran; the last process to end writes them all.
    points = [point_of(cfg, *s) for s in cfg.students() if (cfg.out / "ctr" / s[0] / "summary.json").exists()
              and (cfg.out / "f1" / s[0] / steps.F1_JSON).exists()]
    write_jsonl(cfg.out / "points.jsonl", points)
    write_jsonl(cfg.out / "timings.jsonl", timings(cfg))
    if len(points) < 3:
        print(f"{len(points)} finished students so far: the correlation needs 3")
        return None
    stats = write_report(cfg.out / "points.jsonl", cfg.out / "correlate")
    print((cfg.out / "correlate" / TABLE_MD).read_text())
    return stats

