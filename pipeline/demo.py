"""The main job (`make demo`): the whole chain on the bundled sample, with figures a newcomer can read.

1. validate the sample; sample items (stratified by category, importance-weighted by exposures) and users,
   holding the gold ids out;
2. item- and user-level knowledge from the teacher, for the training sample and for the gold ids;
3. the SFT data (key-phrase shuffling + dictionary substitution); the untrained student's answers, LoRA
   training, the trained student's answers;
4. teacher and student key-phrase F1 against the gold, beside a no-model baseline (the words of each input);
5. CTR: prepare the sample's clicks (split by time, histories of earlier clicks only); the teacher's knowledge
   for every item of the sample; then DIN alone and MSD-DIN with three kinds of item vectors, on the same split
   over three seeds: the trained student's hidden states over the item name (MSD's route), the bundled MiniLM
   over the name alone (the raw-text control: no LLM) and MiniLM over the teacher's knowledge text (KAR's route).
   Only a gain of the knowledge row over the raw-text row is the LLM's.

Every step is resumable (pipeline/steps.py): a re-run skips what is done.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ctr.raw import PrepareConfig
from ctr.train_config import CTRConfig
from distill.data import DataConfig
from distill.embed import EmbedConfig
from distill.student_config import StudentConfig
from distill.train_config import TrainConfig
from eval.embedder import Embedder
from eval.paired import format_ratio, paired_f1_ratio, per_item_f1, rounded
from ground import records as R
from ground.files import iter_jsonl, write_json, write_jsonl
from kgen.generate import GenerateConfig
from kgen.sample import SampleConfig, sample_rows
from pipeline import steps
from pipeline.steps import SMALL_STUDENT_EPOCHS, SMALL_STUDENT_LEARNING_RATE, default_of

# Small and quick: the bundled sample has ~19k train rows, so a larger rate and more epochs than on ML-1M.
CTR_SETTINGS = {"embed_dim": 8, "max_history": 20, "batch_size": 256, "learning_rate": 3e-3}
ITEM_NAME_TOKENS = 32  # `distill embed --max-length` for the item texts (the sample's names have at most 35 characters)
SENTENCE_ENCODER = "all-minilm-l6-v2"  # the bundled MiniLM: raw-text control and KAR route alike
# Row -> (model, item vectors). Vectors: "student" = the trained student's hidden states (MSD's route),
# "raw text" = MiniLM over the item name (no LLM), "knowledge" = MiniLM over the teacher's knowledge text (KAR).
CTR_ROWS = {"DIN": ("din", None), "MSD-DIN student": ("msd", "student"), "MSD-DIN raw text": ("msd", "raw text"),
            "MSD-DIN knowledge": ("msd", "knowledge")}


@dataclass(kw_only=True)
class DemoConfig:
    """Sizes and settings of the main job; every size is multiplied by `scale`."""

    sample: Path  # items.jsonl, users.jsonl and interactions.jsonl of the bundled sample
    gold: Path  # gold key phrases of sample items and users
    out: Path
    scale: int = 1
    train_items: int = 24
    train_users: int = 8
    eval_items: int = 12
    eval_users: int = 6
    teacher: str | None = default_of(GenerateConfig, "teacher")
    # Teacher and student alike: "json" = constrained to kgen/answer_schema.py (explicit values spans of the input).
    answer_format: str = default_of(StudentConfig, "answer_format")
    student: str = default_of(TrainConfig, "student")
    train_epochs: float = SMALL_STUDENT_EPOCHS
    learning_rate: float = SMALL_STUDENT_LEARNING_RATE
    seed: int = default_of(TrainConfig, "seed")
    ctr_epochs: int = 8
    ctr_seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        self.sample, self.gold, self.out = Path(self.sample), Path(self.gold), Path(self.out)
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")

    def n(self, base: int) -> int:
        return base * self.scale


def stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def pick_inputs(cfg: DemoConfig) -> dict:
    """Validate the sample; write the training rows (gold ids held out) and the gold rows to score on."""
    items = R.read_records(cfg.sample / "items.jsonl", "item")
    users = R.read_records(cfg.sample / "users.jsonl", "user")
    gold = R.read_records(cfg.gold, "gold")
    held_out = {(g[R.LEVEL], str(g[R.ID])) for g in gold}
    picked_items = sample_rows([i for i in items if ("item", str(i[R.ITEM_ID])) not in held_out],
                               SampleConfig(n=cfg.n(cfg.train_items), by=R.CATEGORY, allocation="sqrt",
                                            weight=R.EXPOSURES, seed=cfg.seed))
    picked_users = sample_rows([u for u in users if ("user", str(u[R.USER_ID])) not in held_out],
                               SampleConfig(n=cfg.n(cfg.train_users), weight="history_len", seed=cfg.seed))
    eval_gold = ([g for g in gold if g[R.LEVEL] == "item"][: cfg.n(cfg.eval_items)]
                 + [g for g in gold if g[R.LEVEL] == "user"][: cfg.n(cfg.eval_users)])
    eval_ids = {(g[R.LEVEL], str(g[R.ID])) for g in eval_gold}
    paths = data_paths(cfg)
    write_jsonl(paths["train_item"], picked_items)
    write_jsonl(paths["train_user"], picked_users)
    write_jsonl(paths["eval_item"], [i for i in items if ("item", str(i[R.ITEM_ID])) in eval_ids])
    write_jsonl(paths["eval_user"], [u for u in users if ("user", str(u[R.USER_ID])) in eval_ids])
    write_jsonl(paths["eval_gold"], eval_gold)
    return {"items": len(items), "users": len(users), "gold": len(gold), "train_items": len(picked_items),
            "strata": len({r[R.STRATUM] for r in picked_items}), "train_users": len(picked_users),
            "eval_gold": len(eval_gold)}


def data_paths(cfg: DemoConfig) -> dict[str, Path]:
    data = cfg.out / "data"
    return {"train_item": data / "train_items.jsonl", "train_user": data / "train_users.jsonl",
            "eval_item": data / "eval_items.jsonl", "eval_user": data / "eval_users.jsonl",
            "eval_gold": data / "eval_gold.jsonl"}


def sample_step(cfg: DemoConfig) -> dict[str, Path]:
    """The inputs of the job (resumable like every step), with their counts printed."""
    sizes = {k: cfg.n(getattr(cfg, k)) for k in ("train_items", "train_users", "eval_items", "eval_users")}
    n = steps.resumable("sample", cfg.out / "data", {**sizes, "seed": cfg.seed},
                        [cfg.sample / "items.jsonl", cfg.sample / "users.jsonl", cfg.gold], lambda: pick_inputs(cfg))
    print(f"sample: {n['items']} items, {n['users']} users; gold: {n['gold']} records, held out of training")
    print(f"training: {n['train_items']} items over {n['strata']} categories, {n['train_users']} users; "
          f"scoring on {n['eval_gold']} gold records")
    return data_paths(cfg)


def teacher_knowledge(cfg: DemoConfig, level: str, split: str, paths: dict) -> dict:
    """One level's knowledge from the teacher for the training or the gold inputs, with a summary of it."""
    output = cfg.out / "knowledge" / f"teacher_{split}_{level}.jsonl"
    metrics = steps.teacher(GenerateConfig(
        level=level, input=paths[f"{split}_{level}"], output=output, teacher=cfg.teacher,
        items=cfg.sample / "items.jsonl",
        settings=steps.teacher_settings(answer_format=cfg.answer_format, seed=cfg.seed)))
    return {**metrics, "summary": summarise(output)}


def student_knowledge(cfg: DemoConfig, model: str, paths: dict, name: str) -> Path:
    """The student's answers for the gold ids of both levels, then both in one file (the teacher's format)."""
    knowledge = cfg.out / "knowledge"
    for level in R.LEVELS:
        steps.student_answers(StudentConfig(model=model, level=level, input=paths[f"eval_{level}"],
                                            output=knowledge / f"{name}_{level}.jsonl",
                                            items=cfg.sample / "items.jsonl", seed=cfg.seed,
                                            answer_format=cfg.answer_format))
    return concatenate([knowledge / f"{name}_{level}.jsonl" for level in R.LEVELS], knowledge / f"{name}.jsonl")


def concatenate(parts: list[Path], output: Path) -> Path:
    write_jsonl(output, [r for part in parts for r in R.read_records(part, "knowledge")])
    return output


def f1_table(cfg: DemoConfig, predictions: dict[str, Path], gold: Path) -> dict:
    """Key-phrase F1 of each prediction file and of the no-model name-words baseline on the gold."""
    embedder = Embedder()
    f1 = {name: steps.f1(pred=pred, gold=gold, output=cfg.out / "f1" / name, embedder=embedder, seed=0)
          for name, pred in predictions.items()}
    f1["baseline_name_words"] = steps.f1(baseline="name-words", gold=gold, embedder=embedder, seed=0,
                                         output=cfg.out / "f1" / "baseline_name_words")
    return f1


def student_teacher_ratio(f1_dir: Path) -> dict:
    """The trained student's macro F1 over its teacher's, paired over the same gold records, with a bootstrap CI."""
    per_item = {name: per_item_f1([row for _, row in iter_jsonl(f1_dir / name / steps.PER_ITEM_JSONL)])
                for name in ("student_after", "teacher")}
    return rounded(paired_f1_ratio(per_item["student_after"], per_item["teacher"], n_boot=1000, seed=0))


def ctr_comparison(cfg: DemoConfig, student: Path) -> dict:
    """`ctr prepare --dataset sample`; the teacher's knowledge for every item; the three item-vector tables
    (MSD's user vector: the mean over each sample's own history); then the CTR_ROWS over `ctr_seeds` on the same
    split and settings."""
    ctr = cfg.out / "ctr"
    prepared = ctr / "prepared"
    card = steps.prepare_ctr(PrepareConfig(dataset="sample", raw=cfg.sample, output=prepared, seed=cfg.seed))
    print(json.dumps({split: card["splits"][split]["samples"] for split in ("train", "val", "test")}))
    items = prepared / "items.jsonl"
    catalogue = cfg.out / "knowledge" / "teacher_catalogue_item.jsonl"
    steps.teacher(GenerateConfig(level="item", input=items, output=catalogue, teacher=cfg.teacher,
                                 settings=steps.teacher_settings(answer_format=cfg.answer_format, seed=cfg.seed)))
    tables = {"student": EmbedConfig(model=str(student), items=items, output=ctr / "vectors_student",
                                     max_length=ITEM_NAME_TOKENS),
              "raw text": EmbedConfig(encoder=SENTENCE_ENCODER, items=items, output=ctr / "vectors_raw_text"),
              "knowledge": EmbedConfig(encoder=SENTENCE_ENCODER, source="knowledge", knowledge=catalogue,
                                       items=items, output=ctr / "vectors_knowledge")}
    made = {name: steps.vectors(config) for name, config in tables.items()}
    print(f"knowledge texts: {made['knowledge']['texts']['items']}")
    return {row: steps.ctr(CTRConfig(data=str(prepared), knowledge=str(tables[vectors].output) if vectors else None,
                                     output=str(ctr / row.replace(" ", "_")), model=model, epochs=cfg.ctr_epochs,
                                     **CTR_SETTINGS), list(cfg.ctr_seeds))
            for row, (model, vectors) in CTR_ROWS.items()}


def summarise(path: Path) -> dict:
    """Status counts and the first answers' key phrases of a knowledge file."""
    rows = R.read_records(path, "knowledge")
    ok = [r for r in rows if r[R.STATUS] == "ok"]
    return {"records": len(rows), "ok": len(ok),
            "status": {s: n for s in R.STATUSES if (n := sum(r[R.STATUS] == s for r in rows))},
            "mean_key_phrases_ok": round(sum(len(r[R.KEY_PHRASES]) for r in ok) / max(len(ok), 1), 2),
            "examples": [{"input": r[R.INPUT][:60], "key_phrases": r[R.KEY_PHRASES][:8]} for r in ok[:2]]}


def run_demo(cfg: DemoConfig) -> dict:
    """The whole job; its config and metrics go to OUT/run.json and a summary is printed."""
    m: dict = {}
    t0 = time.perf_counter()
    stage("1. sample: validate the bundled sample, stratified + importance sampling")
    paths = sample_step(cfg)
    for split in ("train", "eval"):
        for level in R.LEVELS:
            stage(f"2. teacher: {level}-level knowledge for the {split} inputs")
            m[f"teacher_{split}_{level}"] = teacher_knowledge(cfg, level, split, paths)
    stage("3. distill build-data: SFT examples with key-phrase shuffling and dictionary substitution")
    knowledge, sft, trained = cfg.out / "knowledge", cfg.out / "sft", cfg.out / "student"
    m["sft"] = steps.sft_data(DataConfig(knowledge=[knowledge / f"teacher_train_{lv}.jsonl" for lv in R.LEVELS],
                                         output=sft, augment=("shuffle", "dictionary"), shuffle_factor=1,
                                         seed=cfg.seed, answer_format=cfg.answer_format))
    print(json.dumps(m["sft"]))
    stage("4. the untrained student on the gold inputs")
    before = student_knowledge(cfg, cfg.student, paths, "student_before")
    stage("5. distill train: LoRA SFT of the student on the teacher's answers")
    # On CPU `distill train` runs each optimizer step's batch in passes of 2 examples to bound the activations.
    m["train"] = steps.student(TrainConfig(data=str(sft), output=str(trained), student=cfg.student, lora=True,
                                           epochs=cfg.train_epochs, learning_rate=cfg.learning_rate, save_steps=20,
                                           seed=cfg.seed))
    stage("6. the trained student on the gold inputs")
    after = student_knowledge(cfg, str(trained), paths, "student_after")
    stage("7. key-phrase F1 against the sample gold")
    teacher_eval = concatenate([knowledge / f"teacher_eval_{lv}.jsonl" for lv in R.LEVELS],
                               knowledge / "teacher_eval.jsonl")
    m["f1"] = f1_table(cfg, {"teacher": teacher_eval, "student_before": before, "student_after": after},
                       paths["eval_gold"])
    m["student_over_teacher"] = student_teacher_ratio(cfg.out / "f1")
    stage("8. CTR: DIN vs MSD-DIN on the sample's clicks: the student's vectors, the raw-text control, the teacher's "
          "knowledge text")
    m["ctr"] = ctr_comparison(cfg, trained)
    m["total_s"] = round(time.perf_counter() - t0, 1)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    write_json(cfg.out / "run.json", {"config": config, "metrics": m})
    print_summary(m, cfg)
    return m


def format_comparison(results: dict) -> str:
    """A small table: test AUC / GAUC / LogLoss, mean +- std over the seeds."""
    lines = [f"{'model':18} {'AUC':>17} {'GAUC':>17} {'LogLoss':>17}"]
    for name, s in results.items():
        cells = [f"{s['test'][k]['mean']:.4f} +- {s['test'][k]['std']:.4f}" for k in ("auc", "gauc", "logloss")]
        lines.append(f"{name:18} " + " ".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)


def print_summary(m: dict, cfg: DemoConfig) -> None:
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
    auc = {row: r["test"]["auc"]["mean"] for row, r in m["ctr"].items()}
    for row in ("MSD-DIN student", "MSD-DIN raw text", "MSD-DIN knowledge"):
        print(f"{row} AUC minus DIN AUC: {auc[row] - auc['DIN']:+.4f}")
    print(f"the teacher's knowledge over the raw text (MSD-DIN knowledge minus raw text): "
          f"{auc['MSD-DIN knowledge'] - auc['MSD-DIN raw text']:+.4f} (3 seeds; intervals: bench/bench_ctr.py)")
    print(f"total {m['total_s']} s; config and metrics in {cfg.out / 'run.json'}")
