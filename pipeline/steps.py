"""The chain teacher -> SFT data -> student -> F1 -> vectors -> CTR, one function a step, each resumable.

Each step takes the library's own config (built by keyword, with only the settings that differ from its
defaults), runs it, and writes a step record beside its output (`<output>.step.json`: the step, its config,
a stamp of each input, its result, its seconds). Called again, a step whose output exists and whose record
holds the same config and the same input stamps returns the recorded result without running; anything else
runs it again, and the library resumes what it can (generations skip finished rows; training resumes from
its last checkpoint unless the record says the folder holds another config's run). An input's stamp is its
own step record's finish time when a step wrote it, else a digest of its content (a file) or of its files'
names, sizes and times (a folder): a step whose input was rebuilt runs again.

    from pipeline import steps
    metrics = steps.teacher(GenerateConfig(level="item", input=items, output=out / "teacher.jsonl"))
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

from ctr.user_table import write_user_mean_table
from ctr.prepare import prepare
from ctr.raw import PrepareConfig
from ctr.train import train_seeds
from ctr.train_config import CTRConfig
from distill.data import DataConfig, build_data
from distill.embed import EmbedConfig, embed_tables
from distill.student_config import StudentConfig
from distill.generate import generate_student
from distill.train import train
from distill.train_config import TrainConfig
from eval.baselines import baseline_records
from eval.embedder import Embedder
from eval.f1_report import evaluate_f1, headline_figures
from ground import records as R
from ground.config import config_dict
from ground.errors import RecordError
from ground.files import write_json, write_jsonl
from ground.flags import field_default
from kgen.generate import GenerateConfig
from kgen.generate import generate_knowledge
from kgen.teachers.base import GenerationSettings

RECORD_SUFFIX = ".step.json"
F1_JSON, PER_ITEM_JSONL = "f1.json", "per_item.jsonl"

# LoRA on the embedded 135M student (the demo and the F1-vs-AUC study): with rank 16 it needs a larger rate than
# the 2e-4 LoRA default (tuned for 7B models) to pick up the answer format within a few dozen steps.
SMALL_STUDENT_EPOCHS, SMALL_STUDENT_LEARNING_RATE = 2.0, 1e-3


def default_of(config_class: type, name: str) -> object:
    """A library config field's default, so that a pipeline setting passed through to it is declared once."""
    return field_default({f.name: f for f in fields(config_class)}[name])


def teacher_settings(**changes: object) -> GenerationSettings:
    """The teacher's default generation settings with some changed (the token limit follows the answer format)."""
    return GenerationSettings(**changes)


def record_path(output: Path) -> Path:
    return Path(f"{output}{RECORD_SUFFIX}")


def stamp(path: Path) -> str | None:
    """What identifies an input's current state: its step record's finish time, else a digest of it."""
    path = Path(path)
    if record_path(path).exists():
        return str(read_record(record_path(path))["finished_ns"])
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]
    return None


def read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: not a step record ({e}); delete it to run the step again") from None


def resumable(step: str, output: Path, config: dict, inputs: list[Path], work: Callable[[], dict]) -> dict:
    """Return `work()`, or the recorded result when `output` exists and its record has this config and inputs."""
    output = Path(output)
    key = {"step": step, "config": json.loads(json.dumps(config, default=str)),
           "inputs": {str(p): stamp(p) for p in inputs if p is not None and Path(p).exists()}}
    path = record_path(output)
    if output.exists() and path.exists():
        recorded = read_record(path)
        if {k: recorded.get(k) for k in key} == key:
            print(f"skip {step}: {output} is done with the same config and inputs ({path.name})", flush=True)
            return recorded["result"]
    start = time.perf_counter()
    result = work()
    write_json(path, {**key, "result": result, "seconds": round(time.perf_counter() - start, 1),
                      "load_avg_1m": round(os.getloadavg()[0], 2), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "finished_ns": time.time_ns()})
    return result


def teacher(config: GenerateConfig) -> dict:
    """`kgen generate`: one level's knowledge from the teacher; the run's metrics."""
    return resumable("teacher", config.output, config_dict(config), [config.input, config.items],
                     lambda: generate_knowledge(config)["metrics"])


def sft_data(config: DataConfig) -> dict:
    """`distill build-data`: the student's SFT examples from the teacher's ok answers; the counts."""
    return resumable("sft_data", config.output, config.to_dict(), [*config.knowledge, config.dictionary],
                     lambda: build_data(config))


def student(config: TrainConfig) -> dict:
    """`distill train`: SFT (or LoRA) of the student on the SFT data; the training metrics."""
    def work() -> dict:
        # A record here is another config's or other data's: its checkpoints are not this run's to resume from.
        stale = record_path(Path(config.output)).exists()
        return train(replace(config, resume=False) if stale else config)

    return resumable("student", Path(config.output), config.to_dict(), [Path(config.data)], work)


def student_answers(config: StudentConfig) -> dict:
    """`distill generate`: one level's answers of a student (trained or not), teacher records; the run's metrics."""
    return resumable("student_answers", config.output, config.to_dict(), [Path(config.model), config.input,
                                                                           config.items, config.ids],
                     lambda: generate_student(config)["metrics"])


def f1(*, gold: Path, output: Path, embedder: Embedder, pred: Path | None = None, baseline: str | None = None,
       seed: int, level: str | None = None) -> dict:
    """`distill eval-f1`: key-phrase F1 of `pred` (or of a no-model `baseline`) on the gold, written to
    output/f1.json and per_item.jsonl; the headline figures."""
    if (pred is None) == (baseline is None):
        raise ValueError("f1: give pred or baseline, not both")
    config = {"pred": pred, "baseline": baseline, "gold": gold, "embedder": embedder.name, "level": level,
              "seed": seed}

    def work() -> dict:
        gold_rows = R.require_rows(R.read_records(gold, "gold", unique=True), gold)
        rows = baseline_records(gold_rows, baseline) if baseline else R.read_records(pred, "knowledge", unique=True)
        report = evaluate_f1(rows, gold_rows, embedder, seed=seed, level=level)
        write_jsonl(Path(output) / PER_ITEM_JSONL, report.pop("per_item"))
        write_json(Path(output) / F1_JSON, report)
        return headline_figures(report)

    return resumable("f1", output, config, [pred, gold], work)


def vectors(config: EmbedConfig, user_means: Path | None = None) -> dict:
    """`distill embed`: item (and user) vectors of the input texts or of knowledge records, by the student or a
    sentence encoder; with `user_means` (user records), each of those users also gets the mean of their history
    items' vectors (the cheap user level on a CPU). The embed summary."""
    def work() -> dict:
        summary = embed_tables(config)
        if user_means is not None:
            summary["user_means"] = write_user_mean_table(config.output, user_means)
        return summary

    inputs = [config.items, config.users, config.knowledge, config.user_knowledge, user_means]
    return resumable("vectors", config.output, {**config_dict(config), "user_means": user_means},
                     [Path(config.model) if config.model else None, *inputs], work)


def prepare_ctr(config: PrepareConfig) -> dict:
    """`ctr prepare`: a raw data set -> a CTR folder split by time; its card."""
    return resumable("prepare_ctr", config.output, config_dict(config), [config.raw], lambda: prepare(config))


def ctr(config: CTRConfig, seeds: list[int]) -> dict:
    """`ctr train --seeds`: one CTR model per seed; the test figures as mean +- std."""
    inputs = [Path(config.data)] + ([Path(config.knowledge)] if config.knowledge else [])
    return resumable("ctr", Path(config.output), {**config.to_dict(), "seeds": list(seeds)}, inputs,
                     lambda: train_seeds(config, list(seeds)))
