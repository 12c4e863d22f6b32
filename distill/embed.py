"""Item and user embedding tables from the student, for the CTR side.

A vector is the mean of the student's last hidden states over the input text
(an item's name; a user's rendered purchase history), the same text the
student reads in its prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ground.config import config_dict
from ground.errors import ConfigError, RecordError
from ground.files import check_output_folder, write_json
from ground import records as R
from distill.encode import encode_texts, load_encoder
from distill.student_config import model_field
from ground.flags import flag
from ground.vectors import ITEM_TABLE, USER_TABLE, write_table
from kgen.inputs import item_input, user_input
from kgen.settings import check_engine, engine_field, workers_field


@dataclass(kw_only=True)
class EmbedConfig:
    """Settings of `distill embed`."""

    model: str = model_field()
    items: Path = field(metadata=flag("Item records JSONL."))
    output: Path = field(metadata=flag("Output folder.", "--output", "-o"))
    users: Path | None = field(default=None, metadata=flag("User records JSONL (histories rendered from --items)."))
    batch_size: int = field(default=16, metadata=flag("Texts per forward pass."))
    max_length: int = field(default=256, metadata=flag("Tokens per input (longer inputs are truncated)."))
    max_history: int = field(default=20, metadata=flag("Most recent purchases in a user's text."))
    # or ray: batches encoded by Ray Data workers, each with its own copy of the model
    engine: str = engine_field()
    workers: int | None = workers_field()

    def __post_init__(self) -> None:
        self.items, self.output = Path(self.items), Path(self.output)
        self.users = Path(self.users) if self.users else None
        check_engine(self.engine, self.workers)
        for name in ("batch_size", "max_length", "max_history"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

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


def embed_tables(config: EmbedConfig) -> dict:
    """Write item (and user) embedding tables + embed_config.json into the output folder; return that config."""
    check_output_folder(config.output)
    item_texts, user_texts = load_texts(config)
    if config.engine == "ray":
        from distill.embed_ray import encode_texts_ray

        encode = partial(encode_texts_ray, config.model, workers=config.workers)
        dim = None
    else:
        model, tokenizer = load_encoder(config.model)
        encode = partial(encode_texts, model, tokenizer)
        dim = model.config.get_text_config().hidden_size
    config.output.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, texts, table in (("items", item_texts, ITEM_TABLE), ("users", user_texts, USER_TABLE)):
        if not texts:
            continue
        vectors = encode(list(texts.values()), config.batch_size, config.max_length, name)
        write_table(config.output / table, list(texts), vectors)
        counts[name] = len(texts)
        dim = vectors.shape[1]
    summary = {**config.to_dict(), "pooling": "mean", "layer": "last_hidden_state", "dim": dim, "counts": counts,
               "tables": {k: t for k, t in (("items", ITEM_TABLE), ("users", USER_TABLE)) if k in counts}}
    write_json(config.output / "embed_config.json", summary)
    return summary
