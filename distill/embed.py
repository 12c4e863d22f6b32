"""Item and user embedding tables from the student, for the CTR side.

A vector is the mean of the student's last hidden states over the input text
(an item's name; a user's rendered purchase history), the same text the
student reads in its prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from kgen import records as R
from kgen.inputs import item_input, user_input

ITEM_TABLE = "item_embeddings.parquet"
USER_TABLE = "user_embeddings.parquet"
VECTOR = "vector"


@dataclass
class EmbedConfig:
    """Settings of `distill embed`."""

    model: str
    items: Path
    output: Path
    users: Path | None = None
    batch_size: int = 16
    max_length: int = 256
    max_history: int = 20
    engine: str = "local"  # or ray: batches encoded by Ray Data workers, each with its own copy of the model
    workers: int | None = None

    def __post_init__(self) -> None:
        from kgen.generate import check_engine

        self.items, self.output = Path(self.items), Path(self.output)
        self.users = Path(self.users) if self.users else None
        check_engine(self.engine, self.workers)
        for name in ("batch_size", "max_length", "max_history"):
            if getattr(self, name) < 1:
                raise R.ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return R.config_dict(self)


def mean_pool(hidden, mask):
    """(B, T, D) hidden states, (B, T) attention mask -> (B, D) mean over the real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def encode_texts(model, tokenizer, texts: list[str], batch_size: int, max_length: int, desc: str,
                 progress: bool = True):
    """(N, D) float32 numpy array of mean-pooled last hidden states, batch by batch (a progress bar unless off)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    out = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", dynamic_ncols=True,
                          disable=not progress):
            enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state  # (B, T, D)
            out.append(mean_pool(hidden.float(), enc["attention_mask"]).cpu().numpy())
    dim = model.config.get_text_config().hidden_size
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)


def write_table(path: Path, ids: list[str], vectors) -> None:
    """A parquet table: id (string), vector (list<float32>)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
    table = pa.table({R.ID: pa.array(ids, pa.string()), VECTOR: column.cast(pa.list_(pa.float32()))})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_table(path: str | Path) -> tuple[list[str], object]:
    """(ids, (N, D) float32 array) from a table written by `distill embed`."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    vectors = table.column(VECTOR).combine_chunks()
    dim = len(vectors[0]) if len(vectors) else 0
    flat = vectors.flatten().to_numpy(zero_copy_only=False)
    return table.column(R.ID).to_pylist(), np.asarray(flat, np.float32).reshape(len(vectors), dim)


def load_texts(config: EmbedConfig) -> tuple[dict[str, str], dict[str, str]]:
    """id -> input text, for items and (when given) users; duplicate ids raise RecordError."""
    by_id = {R.record_id(row): row for row in R.require_rows(R.read_records(config.items, "item", unique=True), config.items)}
    item_texts = {rid: item_input(row) for rid, row in by_id.items()}
    user_texts: dict[str, str] = {}
    if config.users:
        for lineno, user in R.read_numbered_records(config.users, "user", unique=True):
            try:
                user_texts[R.record_id(user)] = user_input(user, by_id, config.max_history)
            except R.RecordError as exc:
                raise R.RecordError(f"{config.users}:{lineno}: {exc}") from None
    return item_texts, user_texts


def load_encoder(model: str):
    """The student's transformer body (no LM head) and tokenizer; a LoRA adapter is merged first."""
    import torch

    from distill.export import load_causal_lm

    lm, tokenizer = load_causal_lm(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # mean pooling uses the mask, so either side works; right is the usual
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return lm.base_model.to(device).eval(), tokenizer  # base_model: the decoder stack, e.g. LlamaModel


def embed_tables(config: EmbedConfig) -> dict:
    """Write item (and user) embedding tables + embed_config.json into the output folder; return that config."""
    R.check_output_folder(config.output)
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
    R.write_json(config.output / "embed_config.json", summary)
    return summary
