"""The main job, end to end on the embedded defaults (`make demo`).

1. validate the bundled sample; sample items (stratified by category,
   importance-weighted by exposures) and users, holding the gold ids out;
2. generate item- and user-level knowledge with the embedded teacher, for the
   training sample and for the gold evaluation ids;
3. build the SFT data (key-phrase shuffling + dictionary substitution), score
   the untrained student, LoRA-train it, and score it again;
4. print teacher and student key-phrase F1 against the sample gold, beside a
   no-model baseline (the words of each input);
5. CTR: prepare the sample's clicks (split by time, histories of earlier
   clicks only), embed its items with the trained student, and train DIN and
   MSD-DIN on the same split over three seeds.

`--scale N` multiplies every size; the default finishes in about 10 minutes on
2 CPU cores. Re-running resumes: finished generations are skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ctr.compare import compare_din_msd, format_comparison
from ctr.raw import PrepareConfig
from ctr.prepare import prepare as prepare_ctr_data
from distill.data import DataConfig, build_data
from distill.generate import generate_student
from distill.student_config import StudentConfig
from distill.train import train
from distill.train_config import TrainConfig
from eval.baselines import baseline_records
from eval.embedder import Embedder
from eval.f1_report import evaluate_f1, headline_figures
from eval.paired import format_ratio, paired_f1_ratio, per_item_f1, rounded
from ground.files import iter_jsonl, write_json, write_jsonl
from ground import records as R
from kgen.answer_schema import DEFAULT_ANSWER_FORMAT
from kgen.generate import GenerateConfig, generate_knowledge
from kgen.models import EMBEDDED_LLM
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
    train_items: int = 24
    train_users: int = 8
    eval_items: int = 12
    eval_users: int = 6
    batch_size: int = 8
    max_new_tokens: int | None = None  # None: the answer format's own limit (kgen.answer_schema.default_max_new_tokens)
    teacher: str | None = None
    # Teacher and student alike: "json" = constrained to kgen/answer_schema.py (explicit values spans of the input).
    answer_format: str = DEFAULT_ANSWER_FORMAT
    student: str = EMBEDDED_LLM
    train_epochs: float = 2.0
    # A 135M student with rank-16 LoRA needs a larger rate than the 2e-4 default (tuned for 7B models) to pick up
    # the answer format within a few dozen steps.
    learning_rate: float = 1e-3
    seed: int = 0
    ctr_seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")

    def n(self, base: int) -> int:
        return base * self.scale


def stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def prepare_sample(cfg: MainConfig) -> dict[str, Path]:
    """Validate the bundled sample; pick training rows (gold ids held out) and the gold rows to score on."""
    items = R.read_records(SAMPLE / "items.jsonl", "item")
    users = R.read_records(SAMPLE / "users.jsonl", "user")
    gold = R.read_records(GOLD, "gold")
    held_out = {(g[R.LEVEL], str(g[R.ID])) for g in gold}
    print(f"sample: {len(items)} items, {len(users)} users; gold: {len(gold)} records, held out of training")
    picked_items = sample_rows([i for i in items if ("item", str(i[R.ITEM_ID])) not in held_out],
                               SampleConfig(n=cfg.n(cfg.train_items), by=R.CATEGORY, allocation="sqrt",
                                            weight=R.EXPOSURES, seed=cfg.seed))
    picked_users = sample_rows([u for u in users if ("user", str(u[R.USER_ID])) not in held_out],
                               SampleConfig(n=cfg.n(cfg.train_users), weight="history_len", seed=cfg.seed))
    eval_gold = ([g for g in gold if g[R.LEVEL] == "item"][: cfg.n(cfg.eval_items)]
                 + [g for g in gold if g[R.LEVEL] == "user"][: cfg.n(cfg.eval_users)])
    eval_ids = {(g[R.LEVEL], str(g[R.ID])) for g in eval_gold}
    data = cfg.out / "data"
    paths = {"items": SAMPLE / "items.jsonl", "train_item": data / "train_items.jsonl",
             "train_user": data / "train_users.jsonl", "eval_item": data / "eval_items.jsonl",
             "eval_user": data / "eval_users.jsonl", "eval_gold": data / "eval_gold.jsonl"}
    write_jsonl(paths["train_item"], picked_items)
    write_jsonl(paths["train_user"], picked_users)
    write_jsonl(paths["eval_item"], [i for i in items if ("item", str(i[R.ITEM_ID])) in eval_ids])
    write_jsonl(paths["eval_user"], [u for u in users if ("user", str(u[R.USER_ID])) in eval_ids])
    write_jsonl(paths["eval_gold"], eval_gold)
    strata = sorted({r[R.STRATUM] for r in picked_items})
    print(f"training: {len(picked_items)} items over {len(strata)} categories, {len(picked_users)} users; "
          f"scoring on {len(eval_gold)} gold records")
    return paths


def teacher_knowledge(cfg: MainConfig, level: str, input_path: Path, items: Path, output: Path) -> dict:
    """Generate one level's knowledge with the teacher (resumes if the output exists)."""
    settings = GenerationSettings(max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, answer_format=cfg.answer_format)
    config = GenerateConfig(level=level, input=input_path, output=output, teacher=cfg.teacher, items=items,
                            batch_size=cfg.batch_size, settings=settings)
    return generate_knowledge(config)["metrics"]


def student_knowledge(cfg: MainConfig, model: str, paths: dict, name: str) -> Path:
    """Generate the student's answers for the gold ids of both levels into one file (the teacher's format)."""
    out = cfg.out / "knowledge" / f"{name}.jsonl"
    for level in R.LEVELS:
        config = StudentConfig(model=model, level=level, input=paths[f"eval_{level}"], output=out, items=paths["items"],
                               batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                               answer_format=cfg.answer_format)
        generate_student(config)
    return out


def f1_against_gold(pred: Path | list[dict], gold: Path, embedder: Embedder, out: Path) -> dict:
    """Key-phrase F1 of one prediction file (or records) on the evaluation gold; the report goes to `out`."""
    rows = pred if isinstance(pred, list) else R.read_records(pred, "knowledge")
    report = evaluate_f1(rows, R.read_records(gold, "gold"), embedder, seed=0)
    write_jsonl(out / "per_item.jsonl", report.pop("per_item"))
    write_json(out / "f1.json", report)
    return headline_figures(report)


def student_teacher_ratio(f1_dir: Path) -> dict:
    """The trained student's macro F1 over its teacher's, paired over the same gold records, with a bootstrap CI."""
    per_item = {name: per_item_f1([row for _, row in iter_jsonl(f1_dir / name / "per_item.jsonl")])
                for name in ("student_after", "teacher")}
    return rounded(paired_f1_ratio(per_item["student_after"], per_item["teacher"], n_boot=1000, seed=0))


def ctr_comparison(cfg: MainConfig, student: Path) -> dict:
    """`ctr prepare --dataset sample`, then DIN and MSD-DIN over `ctr_seeds` (ctr/compare.py)."""
    prepared = cfg.out / "ctr" / "prepared"
    card = prepare_ctr_data(PrepareConfig(dataset="sample", raw=SAMPLE, output=prepared, seed=cfg.seed))
    print(json.dumps({split: card["splits"][split]["samples"] for split in ("train", "val", "test")}))
    return compare_din_msd(prepared, student, cfg.out / "ctr", seeds=cfg.ctr_seeds)


def summarise(path: Path) -> dict:
    """Status counts and the first answers' key phrases of a knowledge file."""
    rows = R.read_records(path, "knowledge")
    ok = [r for r in rows if r[R.STATUS] == "ok"]
    return {"records": len(rows), "ok": len(ok),
            "status": {s: n for s in R.STATUSES if (n := sum(r[R.STATUS] == s for r in rows))},
            "mean_key_phrases_ok": round(sum(len(r[R.KEY_PHRASES]) for r in ok) / max(len(ok), 1), 2),
            "examples": [{"input": r[R.INPUT][:60], "key_phrases": r[R.KEY_PHRASES][:8]} for r in ok[:2]]}


def main(cfg: MainConfig) -> dict:
    m: dict = {}
    t0 = time.perf_counter()
    stage("1. sample: validate the bundled sample, stratified + importance sampling")
    paths = prepare_sample(cfg)
    knowledge = cfg.out / "knowledge"
    for split in ("train", "eval"):
        for level in R.LEVELS:
            stage(f"2. teacher: {level}-level knowledge for the {split} inputs")
            out = knowledge / f"teacher_{split}_{level}.jsonl"
            m[f"teacher_{split}_{level}"] = teacher_knowledge(cfg, level, paths[f"{split}_{level}"], paths["items"], out)
            m[f"teacher_{split}_{level}"]["summary"] = summarise(out)
    stage("3. distill build-data: SFT examples with key-phrase shuffling and dictionary substitution")
    sft = build_data(DataConfig(knowledge=[knowledge / f"teacher_train_{lv}.jsonl" for lv in R.LEVELS], output=cfg.out / "sft",
                                augment=("shuffle", "dictionary"), shuffle_factor=1, dictionary_factor=1,
                                val_fraction=0.1, seed=cfg.seed, answer_format=cfg.answer_format))
    m["sft"] = sft
    print(json.dumps(sft))
    stage("4. the untrained student on the gold inputs")
    before = student_knowledge(cfg, cfg.student, paths, "student_before")
    stage("5. distill train: LoRA SFT of the student on the teacher's answers")
    trained = cfg.out / "student"
    # Batch 8 per optimizer step; on CPU `distill train` runs it in passes of 2 examples to bound the activations.
    m["train"] = train(TrainConfig(data=str(cfg.out / "sft"), output=str(trained), student=cfg.student, lora=True,
                                   epochs=cfg.train_epochs, learning_rate=cfg.learning_rate, batch_size=8,
                                   save_steps=20, seed=cfg.seed))
    stage("6. the trained student on the gold inputs")
    after = student_knowledge(cfg, str(trained), paths, "student_after")
    stage("7. key-phrase F1 against the sample gold")
    embedder = Embedder()
    teacher_eval = knowledge / "teacher_eval.jsonl"
    write_jsonl(teacher_eval, [r for lv in R.LEVELS for r in R.read_records(knowledge / f"teacher_eval_{lv}.jsonl", "knowledge")])
    baseline = baseline_records(R.read_records(paths["eval_gold"], "gold"))  # no model: the words of each input
    m["f1"] = {name: f1_against_gold(pred, paths["eval_gold"], embedder, cfg.out / "f1" / name)
               for name, pred in (("teacher", teacher_eval), ("student_before", before), ("student_after", after),
                                  ("baseline_name_words", baseline))}
    m["student_over_teacher"] = student_teacher_ratio(cfg.out / "f1")
    stage("8. CTR: DIN vs MSD-DIN on the sample's clicks, with the trained student's item vectors")
    m["ctr"] = ctr_comparison(cfg, trained)
    m["total_s"] = round(time.perf_counter() - t0, 1)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    write_json(cfg.out / "run.json", {"config": config, "metrics": m})
    print_summary(m, cfg)
    return m


def print_summary(m: dict, cfg: MainConfig) -> None:
    print("\n== summary")
    for level in R.LEVELS:
        g = m[f"teacher_train_{level}"]
        s = g["summary"]
        print(f"teacher {level} (training inputs): {s['records']} records, status {s['status']}, "
              f"{g.get('tokens_per_s', 0)} tok/s, mean {s['mean_key_phrases_ok']} key phrases")
        for ex in s["examples"]:
            print(f"  {ex['input']!r} -> {', '.join(ex['key_phrases'])}")
    print(f"SFT: {m['sft']['used_records']} teacher answers -> {m['sft']['train_examples']} training examples "
          f"(+{m['sft']['produced_by_shuffle']} shuffled, +{m['sft']['produced_by_dictionary']} substituted in all splits)")
    t = m["train"]
    print(f"student LoRA training: {t['global_step']} steps, train loss {t['train_loss']:.3f}, eval loss "
          f"{t['eval_loss'] if t['eval_loss'] is None else round(t['eval_loss'], 3)}, {t['train_runtime_s']} s, "
          f"{t['tokens_per_s']} tokens/s, peak RSS {t['peak_rss_mb']} MiB")
    print("key-phrase F1 on the sample gold (macro, one-to-one, MiniLM cosine >= 0.80 uncalibrated):")
    for name, f in m["f1"].items():
        print(f"  {name:<19} F1 {f['f1']:.3f}  95% CI [{f['f1_ci95'][0]:.3f}, {f['f1_ci95'][1]:.3f}]  "
              f"P {f['precision']:.3f}  R {f['recall']:.3f}  exact-match F1 {f['exact_f1']:.3f}  ({f['n_items']} gold records)")
    gain = m["f1"]["student_after"]["f1"] - m["f1"]["student_before"]["f1"]
    print(f"student F1 after training minus before: {gain:+.3f}")
    print(f"student F1 / teacher F1 (after training): {format_ratio(m['student_over_teacher'])}")
    base, teacher = m["f1"]["baseline_name_words"]["f1"], m["f1"]["teacher"]["f1"]
    print(f"teacher F1 minus the no-model name-words baseline: {teacher - base:+.3f}"
          + ("  (the LLM knowledge does not beat the words of the input here)" if teacher <= base else ""))
    print(f"CTR on the sample's test split (seeds {list(cfg.ctr_seeds)}, mean +- std; negatives are sampled, so this "
          "ranks clicks against sampled items, and the sample's negatives make it optimistic: docs/ctr_data.md):")
    print(format_comparison(m["ctr"]))
    gain = m["ctr"]["MSD-DIN"]["test"]["auc"]["mean"] - m["ctr"]["DIN"]["test"]["auc"]["mean"]
    print(f"MSD-DIN AUC minus DIN AUC: {gain:+.4f}")
    print(f"total {m['total_s']} s; config and metrics in {cfg.out / 'run.json'}")


def parse_args() -> MainConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=MainConfig.scale, help="multiply every size (default 1: ~10 min on 2 CPU cores)")
    p.add_argument("--out", type=Path, default=MainConfig.out)
    p.add_argument("--teacher", default=None, help="backend:model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--student", default=MainConfig.student, help="student base: hub id, path, or the embedded alias")
    p.add_argument("--seed", type=int, default=MainConfig.seed)
    p.add_argument("--answer-format", default=MainConfig.answer_format, choices=["text", "json"],
                   help="the teacher's and the student's answer format (json: constrained to kgen/answer_schema.py)")
    a = p.parse_args()
    return MainConfig(out=a.out, scale=a.scale, teacher=a.teacher, student=a.student, seed=a.seed,
                      answer_format=a.answer_format)


if __name__ == "__main__":
    print(json.dumps({"started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    main(parse_args())
