"""Phrase embeddings for F1 matching: a lazily loaded sentence-transformer, with a CJK guard.

all-MiniLM-L6-v2 has an English WordPiece vocabulary: most CJK characters become [UNK], so
two different Chinese phrases can embed identically and "match". Such phrases are refused
with a message naming the fix (a multilingual embedder), never scored silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ground.normalize import has_cjk
from kgen.models import EMBEDDED_EMBEDDER, embedder_path, loading_model, resolve_embedder
from ground.errors import ConfigError

MULTILINGUAL_HINT = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
# Above this share of [UNK] tokens a phrase's embedding says little about the phrase.
MAX_UNK_FRACTION = 0.3


class EmbedderError(ConfigError):
    """The chosen embedder cannot represent some phrases."""


class PhraseEncoder(Protocol):
    """Anything that turns phrases into an (N, D) array: the real Embedder or a test fake."""

    def encode(self, phrases: list[str]) -> np.ndarray: ...


def is_default_english(name: str | None) -> bool:
    """True for the bundled all-MiniLM-L6-v2, by alias, hub id or path."""
    if name in (None, "", EMBEDDED_EMBEDDER):
        return True
    lowered = str(name).casefold()
    return "all-minilm-l6" in lowered or lowered.rstrip("/") == str(embedder_path()).casefold()


def unk_fraction(token_ids: Sequence[int], unk_id: int | None) -> float:
    """Share of tokens that are the unknown token (0 for an empty tokenisation)."""
    if not token_ids or unk_id is None:
        return 0.0
    return sum(t == unk_id for t in token_ids) / len(token_ids)


def check_cjk(
    phrases: Sequence[str],
    label: str,
    english_only: bool,
    tokenize: Callable[[str], Sequence[int]] | None = None,
    unk_id: int | None = None,
) -> None:
    """Raise EmbedderError when CJK phrases would be embedded by a model that cannot read them."""
    cjk = [p for p in phrases if has_cjk(p)]
    if english_only:
        unreadable = cjk
    else:
        unreadable = [p for p in cjk if tokenize and unk_fraction(tokenize(p), unk_id) > MAX_UNK_FRACTION]
    if unreadable:
        raise EmbedderError(
            f"{len(unreadable)} phrase(s) contain CJK text (e.g. {unreadable[0]!r}) that the embedder "
            f"{label} maps to [UNK], so different phrases would match; pass --embedder with a multilingual "
            f"model name or path (e.g. {MULTILINGUAL_HINT})"
        )


class Embedder:
    """A sentence-transformer loaded on first use; encodes phrases to unit-norm rows."""

    def __init__(
        self, name: str | None = None, batch_size: int = 256, device: str | None = None, show_progress: bool = False
    ):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.name = name or EMBEDDED_EMBEDDER
        self.path = resolve_embedder(name)
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress
        self._model = None

    @property
    def model(self):
        """The SentenceTransformer, loaded once."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            with loading_model(self.name):
                self._model = SentenceTransformer(self.path, device=self.device)
        return self._model

    def _token_ids(self, phrase: str) -> list[int]:
        return self.model.tokenizer(phrase, add_special_tokens=False)["input_ids"]

    def check(self, phrases: Sequence[str]) -> None:
        """Refuse CJK phrases the model cannot read (before any encoding work)."""
        if not any(has_cjk(p) for p in phrases):
            return
        english_only = is_default_english(self.name)
        unk_id = None if english_only else self.model.tokenizer.unk_token_id
        check_cjk(phrases, self.name, english_only, None if english_only else self._token_ids, unk_id)

    def check_texts(self, texts: Sequence[str]) -> None:
        """Refuse texts (sentences, not phrases) that are mostly [UNK] to this model. A stray CJK glyph in a long
        English text costs one [UNK] token and is read around; a text in a script the model cannot read is not."""
        if not any(has_cjk(t) for t in texts):
            return
        check_cjk(texts, self.name, False, self._token_ids, self.model.tokenizer.unk_token_id)

    def encode(self, phrases: list[str]) -> np.ndarray:
        """(N, D) float32 unit-norm embeddings, batched; the CJK check runs first."""
        self.check(phrases)
        if not phrases:
            return np.zeros((0, 0), dtype=np.float32)  # no model load for nothing
        emb = self.model.encode(
            list(phrases), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=self.show_progress
        )
        return np.asarray(emb, dtype=np.float32)
