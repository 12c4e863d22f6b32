"""Item and user embedding tables for the CTR side: a text per item (user), encoded into one vector each.

The text (`--source`) is the input the student reads in its prompt (an item's name with what the dataset says
of it; a user's rendered history and profile), or the item's (user's) knowledge record followed by that input
(KAR's route, distill.knowledge_text). The encoder (`--encoder`) is the student (the mean of its last hidden
states) or a sentence-transformers model (its own pooling; the bundled MiniLM by its alias).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal, get_args

from ground.config import config_dict
from ground.errors import ConfigError, RecordError
from ground.files import check_output_folder, write_json
from ground import records as R
from distill.encode import (LAST_LAYER, Pooling, check_readout, count_cut, encode_sentences, encode_texts, load_encoder,
                            load_sentence_encoder, sentence_pooling)
from distill.knowledge_text import (DEFAULT_KNOWLEDGE_FORMAT, KnowledgeFormat, check_knowledge_format,
                                   check_same_inputs, knowledge_texts)
from distill.student_config import model_field
from ground.flags import flag
from ground.snapshots import times_summary, users_file_times
from ground.vectors import ITEM_TABLE, USER_TABLE, write_table
from kgen.inputs import USER_HISTORY, item_input, user_input
from kgen.settings import check_engine, engine_field, workers_field

Source = Literal["input", "knowledge"]
SOURCES: tuple[str, ...] = get_args(Source)
STUDENT_ENCODER = "student"


@dataclass(kw_only=True)
class EmbedConfig:
    """Settings of `distill embed`."""

    model: str | None = model_field(required=False)
    items: Path = field(metadata=flag("Item records JSONL."))
    output: Path = field(metadata=flag("Output folder.", "--output", "-o"))
    users: Path | None = field(default=None, metadata=flag(
        "User records JSONL (histories rendered from --items). A `ctr prepare` users.jsonl: each user's snapshot time "
        "(history_as_of, one of its card's) is kept beside their vector, for `ctr train --user-source table`."))
    source: Source = field(default="input", metadata=flag(
        "The text encoded: input = the item's (user's) input text, no LLM (the raw-text control); knowledge = that "
        "knowledge record (--knowledge, --user-knowledge) followed by the input, the input alone where there is "
        "no ok record (counted)."))
    knowledge: Path | None = field(default=None, metadata=flag(
        "Item knowledge records JSONL, or .jsonl.gz (--source knowledge; items without one keep their input text)."))
    user_knowledge: Path | None = field(default=None, metadata=flag(
        "User knowledge records JSONL (--source knowledge; users without one keep their input text)."))
    knowledge_format: KnowledgeFormat = field(default=DEFAULT_KNOWLEDGE_FORMAT, metadata=flag(
        "How a knowledge record is written before the input: name+explicit+implicit = 'aspect: value' of each "
        "explicit entry, then the implicit values; phrases = the key phrases; implicit = the implicit values only."))
    encoder: str = field(default=STUDENT_ENCODER, metadata=flag(
        "student = --model's hidden states (--layer, --pooling: by default the mean of the last); else a "
        "sentence-transformers model name or path "
        "(all-minilm-l6-v2: the bundled MiniLM)."))
    normalize: bool = field(default=False, metadata=flag(
        "Sentence-transformers encoders: unit-length vectors. Off: the raw pooled vectors (a final Normalize "
        "layer is left out; ctr train z-scores them)."))
    layer: int = field(default=LAST_LAYER, metadata=flag(
        "--encoder student: the hidden-state layer read: -1 = the last hidden state (after the final norm), "
        "0 = the token embeddings, k = the k-th block's output."))
    pooling: Pooling = field(default="mean", metadata=flag(
        "--encoder student: mean = the mean over the text's tokens; last = the last token's state."))
    batch_size: int = field(default=16, metadata=flag("Texts per forward pass."))
    max_length: int = field(default=256, metadata=flag("Tokens per input (longer inputs are truncated)."))
    max_history: int = field(default=20, metadata=flag("Most recent purchases in a user's text."))
    # or ray: batches encoded by Ray Data workers, each with its own copy of the model
    engine: str = engine_field()
    workers: int | None = workers_field()

    def __post_init__(self) -> None:
        self.items, self.output = Path(self.items), Path(self.output)
        self.users = Path(self.users) if self.users else None
        self.knowledge = Path(self.knowledge) if self.knowledge else None
        self.user_knowledge = Path(self.user_knowledge) if self.user_knowledge else None
        check_engine(self.engine, self.workers)
        check_knowledge_format(self.knowledge_format)
        self._check_source()
        if self.encoder == STUDENT_ENCODER and not self.model:
            raise ConfigError("model is required with --encoder student (--model), or name a sentence-transformers "
                              "--encoder")
        check_readout(self.layer, self.pooling)
        if self.encoder != STUDENT_ENCODER and (self.layer != LAST_LAYER or self.pooling != "mean"):
            raise ConfigError("--layer and --pooling choose how the student is read (--encoder student); a "
                              "sentence-transformers encoder pools as its own config says")
        if self.engine == "ray" and self.encoder != STUDENT_ENCODER:
            raise ConfigError(f"engine ray encodes with the student only; --encoder {self.encoder} runs locally")
        for name in ("batch_size", "max_length", "max_history"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    def _check_source(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "knowledge" and not (self.knowledge or self.user_knowledge):
            raise ConfigError("source knowledge needs --knowledge (item knowledge records) or --user-knowledge")
        if self.source == "input" and (self.knowledge or self.user_knowledge):
            raise ConfigError("--knowledge / --user-knowledge are read with --source knowledge only")
        if self.user_knowledge and not self.users:
            raise ConfigError("--user-knowledge needs --users (the user records it belongs to)")

    def to_dict(self) -> dict:
        return config_dict(self)


def load_texts(config: EmbedConfig) -> tuple[dict[str, str], dict[str, str]]:
    """id -> input text, for items and (when given) users; duplicate ids raise RecordError."""
    by_id = {R.record_id(row): row for row in R.require_rows(R.read_records(config.items, "item", unique=True), config.items)}
    item_texts = {rid: item_input(row) for rid, row in by_id.items()}
    user_texts: dict[str, str] = {}
    if config.users:
        for lineno, user in R.read_numbered_records(config.users, "user", unique=True):
            try:
                user_texts[R.record_id(user)] = user_input(user, by_id, config.max_history)
            except RecordError as exc:
                raise RecordError(f"{config.users}:{lineno}: {exc}") from None
    return item_texts, user_texts


def source_texts(config: EmbedConfig, snapshots: bool = False) -> tuple[dict[str, str], dict[str, str],
                                                                       dict[str, dict[str, int]]]:
    """(item texts, user texts, counts per level): the input texts, or with --source knowledge the knowledge texts
    and how many came from an ok record, fell back for want of one, or fell back because theirs failed.

    `snapshots`: the users' records carry snapshot times, so a user's knowledge must have been made from that very
    record (its input: the user's text as `kgen generate` shows it)."""
    item_texts, user_texts = load_texts(config)
    if config.source == "input":
        return item_texts, user_texts, {}
    texts, counts = {}, {}
    for name, level, inputs, path in (("items", "item", item_texts, config.knowledge),
                                      ("users", "user", user_texts, config.user_knowledge)):
        rows = R.read_numbered_records(path, "knowledge", unique=True) if path else []
        texts[name], counts[name] = knowledge_texts(inputs, rows, config.knowledge_format, level, path)
        if level == "user" and snapshots:  # the records' inputs are the teacher's texts of these very users
            shown = inputs if config.max_history == USER_HISTORY else load_texts(
                replace(config, max_history=USER_HISTORY))[1]
            check_same_inputs(shown, rows, path)
    if not user_texts:
        del counts["users"]
    return texts["items"], texts["users"], counts


def student_info(config: EmbedConfig) -> dict:
    return {"encoder_kind": "student", "pooling": config.pooling, "layer": config.layer, "normalized": False}


def text_encoder(config: EmbedConfig) -> tuple[Callable, dict, object | None]:
    """(encode(texts, desc=...) -> (N, D) float32 array, what the vectors are for embed_config.json, the tokenizer
    that counts the texts cut at max_length; None under ray, whose workers hold the model)."""
    if config.engine == "ray":
        from distill.embed_ray import encode_texts_ray

        return partial(encode_texts_ray, config.model, batch_size=config.batch_size, max_length=config.max_length,
                       workers=config.workers, layer=config.layer, pooling=config.pooling), student_info(config), None
    if config.encoder == STUDENT_ENCODER:
        model, tokenizer = load_encoder(config.model)
        return (partial(encode_texts, model, tokenizer, batch_size=config.batch_size, max_length=config.max_length,
                        layer=config.layer, pooling=config.pooling), student_info(config), tokenizer)
    embedder = load_sentence_encoder(config.encoder, config.max_length, config.normalize)
    info = {"encoder_kind": "sentence-transformers", "encoder_path": embedder.path,
            "pooling": sentence_pooling(embedder.model), "normalized": config.normalize}
    return (partial(encode_sentences, embedder, batch_size=config.batch_size, normalize=config.normalize), info,
            embedder.model.tokenizer)


def embed_tables(config: EmbedConfig) -> dict:
    """Write item (and user) embedding tables + embed_config.json into the output folder; return that config."""
    check_output_folder(config.output)
    times = users_file_times(config.users) if config.users else None  # the rows each user's vector may feed
    item_texts, user_texts, sources = source_texts(config, snapshots=times is not None)
    encode, info, tokenizer = text_encoder(config)
    config.output.mkdir(parents=True, exist_ok=True)
    counts, cut, dim = {}, {}, None
    for name, texts, table in (("items", item_texts, ITEM_TABLE), ("users", user_texts, USER_TABLE)):
        if not texts:
            continue
        vectors = encode(list(texts.values()), desc=name)
        as_of = [times[u] for u in texts] if name == "users" and times else None
        write_table(config.output / table, list(texts), vectors, as_of=as_of)
        counts[name], dim = len(texts), int(vectors.shape[1])
        if tokenizer is not None:
            cut[name] = count_cut(tokenizer, list(texts.values()), config.max_length)
    summary = {**config.to_dict(), **info, "dim": dim, "counts": counts, "texts": sources,
               "cut_at_max_length": cut if tokenizer is not None else None,
               "tables": {k: t for k, t in (("items", ITEM_TABLE), ("users", USER_TABLE)) if k in counts},
               **times_summary(times)}
    write_json(config.output / "embed_config.json", summary)
    return summary
