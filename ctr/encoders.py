"""What computes a vector the run's tables lack, and from which text: the serving side of `distill embed`.

A run's knowledge folder says in its embed_config.json how its tables were made, and serving makes a missing
vector the same way:

- the student (`--encoder student`, MSD's route): its hidden states as the tables read them (`--layer`,
  `--pooling`; by default the mean of the last) over the item's input text (`kgen.inputs.item_input`) or the
  user's (`user_input`);
- a sentence-transformers encoder (`--encoder all-minilm-l6-v2` or any name, KAR's route and the raw-text
  control) over the same input text (`--source input`) or over the item's knowledge record followed by its
  input (`--source knowledge`, `distill.knowledge_text`). A catalogue item's knowledge is the record of the
  file the tables were made from; a request may send an item's record with its own `"knowledge"` (a knowledge
  record's explicit / implicit / key_phrases); an item with neither falls back to its input text, as
  `distill embed` does for an item without a record.

The cache keys a vector by the hash of its text under the encoder's version, so a knowledge text and an input
text never share a vector, and neither does another encoder's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill.encode import LAST_LAYER
from distill.knowledge_text import DEFAULT_KNOWLEDGE_FORMAT, render_knowledge
from ground import records as R
from ground.errors import ConfigError, RecordError
from kgen.inputs import item_input, user_input

EMBED_CONFIG = "embed_config.json"
KNOWLEDGE = "knowledge"  # a request's item record may carry its knowledge under this key


class RequestError(ValueError):
    """A request the model cannot score (answered 422, never 500)."""


class StudentEncoder:
    """texts -> (N, Dk) float32 vectors: the student as `distill embed` ran it (its layer and pooling)."""

    def __init__(self, student: str, max_length: int, batch_size: int, layer: int = LAST_LAYER,
                 pooling: str = "mean"):
        self.student, self.max_length, self.batch_size = student, max_length, batch_size
        self.layer, self.pooling = layer, pooling
        self.version = student_version(student, max_length, layer, pooling)
        self.model = self.tokenizer = None  # loaded on the first miss: a warm server never needs the student

    def __call__(self, texts: list[str]) -> np.ndarray:
        from distill.encode import encode_texts, load_encoder

        if self.model is None:
            self.model, self.tokenizer = load_encoder(self.student)
        return encode_texts(self.model, self.tokenizer, texts, self.batch_size, self.max_length, "", progress=False,
                            layer=self.layer, pooling=self.pooling)


def student_version(student: str, max_length: int, layer: int = LAST_LAYER, pooling: str = "mean") -> str:
    """A short hash of the student's weights and configs (an adapter's base included) and the encoding settings."""
    from distill.export import adapter_base, fingerprint, is_adapter, student_path

    path = student_path(student)
    default = (layer, pooling) == (LAST_LAYER, "mean")
    read = "mean:last_hidden_state" if default else f"{pooling}:layer{layer}"  # the default keeps its old keys
    parts = [fingerprint(path), str(max_length), read]
    if is_adapter(path):
        parts.append(fingerprint(adapter_base(Path(path))))
    return hashlib.blake2b("|".join(parts).encode(), digest_size=6).hexdigest()


class SentenceEncoder:
    """texts -> (N, D) float32 vectors: a sentence-transformers model as `distill embed --encoder NAME` ran it."""

    def __init__(self, name: str, max_length: int, normalize: bool, batch_size: int):
        from distill.export import fingerprint
        from kgen.models import resolve_embedder

        self.name, self.max_length, self.normalize, self.batch_size = name, max_length, normalize, batch_size
        path = resolve_embedder(name)
        weights = fingerprint(path) if Path(path).is_dir() else path  # a hub id names its weights
        parts = [weights, str(max_length), f"normalize={normalize}", "sentence-transformers"]
        self.version = hashlib.blake2b("|".join(parts).encode(), digest_size=6).hexdigest()
        self.embedder = None  # loaded on the first miss

    def __call__(self, texts: list[str]) -> np.ndarray:
        from distill.encode import encode_sentences, load_sentence_encoder

        if self.embedder is None:
            self.embedder = load_sentence_encoder(self.name, self.max_length, self.normalize)
        return encode_sentences(self.embedder, texts, self.batch_size, self.normalize, desc="")


@dataclass(kw_only=True)
class TableTexts:
    """The text a table's vector was made from: the input, or the knowledge record followed by the input."""

    source: str = "input"
    knowledge_format: str = DEFAULT_KNOWLEDGE_FORMAT
    items: dict[str, dict] = field(default_factory=dict)  # item id -> its ok knowledge record (source knowledge)
    users: dict[str, dict] = field(default_factory=dict)  # user id -> its ok knowledge record

    def item_text(self, item_id: str, record: dict, catalogue: bool) -> str:
        """The text of an item as the tables would have it; `catalogue`: the record is the catalogue's own."""
        text = item_input(record)
        if self.source != "knowledge":
            return text
        knowledge = record.get(KNOWLEDGE)
        if knowledge is not None and not isinstance(knowledge, dict):
            raise RequestError(f"item {item_id!r}: {KNOWLEDGE} must be an object (a knowledge record's explicit, "
                             "implicit and key_phrases)")
        knowledge = knowledge or (self.items.get(item_id) if catalogue else None)
        return self.rendered(text, knowledge)

    def user_text(self, record: dict, items: dict[str, dict], max_history: int) -> str:
        text = user_input(record, items, max_history)
        if self.source != "knowledge":
            return text
        return self.rendered(text, self.users.get(str(record[R.USER_ID])))

    def rendered(self, text: str, knowledge: dict | None) -> str:
        return render_knowledge(text, knowledge, self.knowledge_format) if knowledge else text


def ok_records(path: str | None, level: str) -> dict[str, dict]:
    """id -> knowledge record of a `distill embed --knowledge` file, the ok ones (a failed one fell back)."""
    if not path:
        return {}
    if not Path(path).exists():
        raise RecordError(f"{path}: the knowledge records the run's tables were made from are gone; serving "
                          "would encode other texts than the tables did")
    return {R.record_id(row): row for _, row in R.read_numbered_records(path, "knowledge", unique=True)
            if row[R.LEVEL] == level and row[R.STATUS] == "ok"}


def read_embed_config(knowledge: Path) -> dict:
    path = knowledge / EMBED_CONFIG
    return json.loads(path.read_text()) if path.exists() else {}


def table_encoder(knowledge: Path, student: str | None, batch_size: int) -> tuple[StudentEncoder | SentenceEncoder,
                                                                                   TableTexts]:
    """The encoder and the text rule of a knowledge folder's tables (its embed_config.json); `student` (the
    `--student` flag) replaces a student, never a sentence-transformers encoder."""
    embed = read_embed_config(knowledge)
    max_length = int(embed.get("max_length", 256))
    texts = TableTexts(source=embed.get("source", "input"),
                       knowledge_format=embed.get("knowledge_format", DEFAULT_KNOWLEDGE_FORMAT),
                       items=ok_records(embed.get("knowledge"), "item"),
                       users=ok_records(embed.get("user_knowledge"), "user"))
    if embed.get("encoder_kind") == "sentence-transformers":
        if student:
            raise ConfigError(f"{knowledge / EMBED_CONFIG}: the tables were made by the sentence-transformers "
                              f"encoder {embed['encoder']!r}, not a student: --student does not apply")
        return SentenceEncoder(embed["encoder"], max_length, bool(embed.get("normalize")), batch_size), texts
    student = student or embed.get("model")
    if not student:
        raise RecordError(f"{knowledge / EMBED_CONFIG}: no student model recorded; pass --student")
    layer = embed.get("layer", LAST_LAYER)
    layer = LAST_LAYER if layer == "last_hidden_state" else int(layer)  # tables written before --layer existed
    return StudentEncoder(student, max_length, batch_size, layer, embed.get("pooling") or "mean"), texts
