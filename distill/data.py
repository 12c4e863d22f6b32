"""From knowledge records to a TRL prompt/completion SFT dataset, with augmentation and a split by id."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from distill.augment import Dictionary, load_dictionary, shuffle_answer, substitute
from ground.config import config_dict
from ground.errors import ConfigError, RecordError
from ground.files import check_output_folder, folder_beside, swap_folder, write_json
from ground.flags import flag
from ground import records as R
from kgen.answer_schema import DEFAULT_ANSWER_FORMAT, AnswerFormat, check_answer_format, format_json_answer
from kgen.parse import ParsedAnswer, format_answer
from kgen.prompting import build_messages, student_template
from prompts import PROMPTS_DIR

AUGMENTATIONS = ("shuffle", "dictionary")
DEFAULT_DICTIONARY = PROMPTS_DIR / "synonyms.tsv"
SOURCE = "source"  # which augmentation produced an example: original, shuffle or dictionary
SPLITS = ("train", "validation")
# A shuffle that lands on an order already produced is drawn again, at most this many times.
_MAX_DRAWS = 8


@dataclass(kw_only=True)
class DataConfig:
    """Settings of `distill build-data`."""

    knowledge: list[Path] = field(metadata=flag("Knowledge JSONL.", "--knowledge", "-k", repeat=True))
    output: Path = field(metadata=flag("Output folder.", "--output", "-o"))
    augment: tuple[str, ...] = field(default=AUGMENTATIONS, metadata=flag(
        f"Augmentations: {', '.join(AUGMENTATIONS)} (empty: none)."))
    shuffle_factor: int = field(default=2, metadata=flag("Shuffled copies per record."))
    dictionary_factor: int = field(default=1, metadata=flag("Synonym-substituted copies per record."))
    dictionary: Path = field(default=DEFAULT_DICTIONARY, metadata=flag("Synonym dictionary TSV."))
    val_fraction: float = field(default=0.1, metadata=flag("Share of ids held out for validation."))
    seed: int = field(default=0, metadata=flag("Seed of the split and the augmentations."))
    # The completions' format: "json" (what `distill generate` constrains the student to by default) or "text".
    answer_format: AnswerFormat = field(default=DEFAULT_ANSWER_FORMAT, metadata=flag(
        "json: completions in the structured format `distill generate` constrains the student to; text: the Key "
        "Features text format."))

    def __post_init__(self) -> None:
        self.knowledge = [Path(p) for p in self.knowledge]
        self.output, self.dictionary = Path(self.output), Path(self.dictionary)
        self.augment = tuple(self.augment)
        if not self.knowledge:
            raise ConfigError("at least one --knowledge file is needed")
        unknown = [a for a in self.augment if a not in AUGMENTATIONS]
        if unknown:
            raise ConfigError(f"--augment: unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)}")
        for name in ("shuffle_factor", "dictionary_factor"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check_answer_format(self.answer_format, "--answer-format")

    def to_dict(self) -> dict:
        return config_dict(self)


def read_ok_records(paths: list[Path]) -> tuple[list[dict], Counter]:
    """Knowledge records with status ok, and how many were skipped per status."""
    kept, skipped = [], Counter()
    for path in paths:
        for row in R.read_records(path, "knowledge"):
            if row[R.STATUS] == "ok" and row[R.KEY_PHRASES]:
                kept.append(row)
            else:
                skipped[row[R.STATUS] if row[R.STATUS] != "ok" else "ok_without_key_phrases"] += 1
    return kept, skipped


def split_score(level: str, rid: str, seed: int) -> float:
    """A stable number in [0, 1) per (level, id); below val_fraction means validation."""
    digest = hashlib.sha256(f"{seed}\t{level}\t{rid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def validation_keys(keys: list[tuple[str, str]], val_fraction: float, seed: int) -> set[tuple[str, str]]:
    """The (level, id) keys in validation; at least one when val_fraction > 0 and two or more ids exist."""
    if val_fraction == 0:
        return set()
    scores = {k: split_score(*k, seed) for k in set(keys)}
    picked = {k for k, s in scores.items() if s < val_fraction}
    # Hashing keeps each id's split stable as data grows; on tiny data it may pick none, so take the lowest.
    if not picked and len(scores) >= 2:
        picked = {min(scores, key=scores.get)}
    return picked


def answer_of(row: dict) -> ParsedAnswer:
    """The parsed fields stored on a knowledge record."""
    return ParsedAnswer(list(row.get(R.EXPLICIT) or []), list(row.get(R.IMPLICIT) or []), list(row[R.KEY_PHRASES]))


def completion_text(row: dict, answer: ParsedAnswer, answer_format: str) -> str:
    """The canonical answer in the student's format.

    JSON answers carry no separate key-phrase list (the values are the key phrases), so an aspect whose value the
    teacher run took out of the key phrases as leaked from its one-shot example is left out with it.
    """
    if answer_format == "text":
        return format_answer(answer.explicit, answer.implicit, answer.key_phrases)
    dropped = {p.casefold() for p in row.get(R.LEAKED_DROPPED) or []}
    kept = lambda aspects: [a for a in aspects if a[R.VALUE].casefold() not in dropped]
    return format_json_answer(kept(answer.explicit), kept(answer.implicit))


def example(row: dict, answer: ParsedAnswer, source: str, answer_format: str) -> dict:
    """One conversational prompt/completion example: the student's short prompt, the canonical answer."""
    template = student_template(row[R.LEVEL], answer_format)
    return {
        "prompt": build_messages(template, row[R.INPUT]),
        "completion": [{"role": "assistant", "content": completion_text(row, answer, answer_format)}],
        R.ID: str(row[R.ID]),
        R.LEVEL: row[R.LEVEL],
        SOURCE: source,
    }


def augmented_answers(row: dict, config: DataConfig, dictionary: Dictionary | None, rng: random.Random) -> list[tuple[str, ParsedAnswer]]:
    """The original answer and its distinct augmentations, each tagged with the augmentation that made it."""
    original = answer_of(row)
    seen = {completion_text(row, original, config.answer_format)}
    out = [("original", original)]

    def keep(source: str, answer: ParsedAnswer) -> bool:
        text = completion_text(row, answer, config.answer_format)
        if text in seen:
            return False
        seen.add(text)
        out.append((source, answer))
        return True

    if "shuffle" in config.augment:
        for _ in range(config.shuffle_factor):
            any(keep("shuffle", ParsedAnswer(*shuffle_answer(original, rng))) for _ in range(_MAX_DRAWS))
    if "dictionary" in config.augment and dictionary:
        for _ in range(config.dictionary_factor):
            any(keep("dictionary", substitute(original, dictionary, rng, row[R.INPUT])) for _ in range(_MAX_DRAWS))
    return out


def build_examples(rows: list[dict], config: DataConfig, dictionary: Dictionary | None) -> dict[str, list[dict]]:
    """Examples per split; every example of one (level, id) lands in the same split."""
    rng = random.Random(config.seed)
    val = validation_keys([(r[R.LEVEL], str(r[R.ID])) for r in rows], config.val_fraction, config.seed)
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row in rows:
        split = "validation" if (row[R.LEVEL], str(row[R.ID])) in val else "train"
        splits[split] += [example(row, answer, source, config.answer_format)
                          for source, answer in augmented_answers(row, config, dictionary, rng)]
    return splits


def count_stats(n_source: int, skipped: Counter, splits: dict[str, list[dict]]) -> dict:
    """The counts written to stats.json."""
    produced = Counter(ex[SOURCE] for rows in splits.values() for ex in rows)
    return {
        "source_records": n_source,
        "used_records": n_source - sum(skipped.values()),
        "skipped_by_status": dict(skipped),
        "originals": produced["original"],
        "produced_by_shuffle": produced["shuffle"],
        "produced_by_dictionary": produced["dictionary"],
        "train_examples": len(splits["train"]),
        "validation_examples": len(splits["validation"]),
        "train_ids": len({(e[R.LEVEL], e[R.ID]) for e in splits["train"]}),
        "validation_ids": len({(e[R.LEVEL], e[R.ID]) for e in splits["validation"]}),
    }


def _features():
    from datasets import Features, List, Value

    turn = {"role": Value("string"), "content": Value("string")}
    return Features({"prompt": List(turn), "completion": List(turn), R.ID: Value("string"),
                     R.LEVEL: Value("string"), SOURCE: Value("string")})


# What `distill build-data` writes into its folder; build_config.json marks the folder as one of its outputs.
BUILD_CONFIG = "build_config.json"
BUILT_ENTRIES = frozenset({"dataset_dict.json", *SPLITS, BUILD_CONFIG, "stats.json"})


def check_output(output: Path) -> None:
    """Refuse an output folder that holds anything but an earlier build-data output: it is replaced whole."""
    check_output_folder(output)
    here = Path.cwd().resolve()
    if output.resolve() in (here, *here.parents):
        raise RecordError(f"{output}: is the current folder or one above it; give a new folder for the dataset")
    entries = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    foreign = [name for name in entries if name not in BUILT_ENTRIES]
    if entries and (foreign or BUILD_CONFIG not in entries):
        shown = foreign[0] if foreign else entries[0]
        raise RecordError(f"{output}: holds {shown!r} and is not an earlier `distill build-data` output; "
                            "give a new or empty folder")


def save_splits(splits: dict[str, list[dict]], folder: Path) -> None:
    """Save the splits as a DatasetDict into `folder`."""
    from datasets import Dataset, DatasetDict

    features = _features()
    # from_dict with empty columns keeps the schema of an empty split (from_list([]) would lose it).
    data = DatasetDict({s: Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)
                        for s, rows in splits.items()})
    # An empty split would be saved with zero shards, which load_from_disk cannot read back; give it one.
    data.save_to_disk(str(folder), num_shards={s: 1 for s, rows in splits.items() if not rows})


def build_data(config: DataConfig) -> dict:
    """Read knowledge, augment, split by id, save dataset + build_config.json + stats.json; return the stats.

    Everything is written into a folder beside the output and swapped in at the end, so a failed run
    leaves the old output (or nothing) and never half a dataset.
    """
    check_output(config.output)
    rows, skipped = read_ok_records(config.knowledge)
    if not rows:
        raise RecordError(f"no usable knowledge records in {', '.join(map(str, config.knowledge))} (skipped: {dict(skipped)})")
    dictionary = load_dictionary(config.dictionary) if "dictionary" in config.augment else None
    splits = build_examples(rows, config, dictionary)
    stats = count_stats(len(rows) + sum(skipped.values()), skipped, splits)
    with folder_beside(config.output) as tmp:
        save_splits(splits, tmp)
        write_json(tmp / BUILD_CONFIG, config.to_dict())
        write_json(tmp / "stats.json", stats)
        swap_folder(tmp, config.output)
    return stats
