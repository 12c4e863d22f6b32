"""Constrained decoding for the transformers backend: a logits processor that enforces a JSON schema.

The grammar engine is llguidance (what vLLM's `guidance` structured-output backend runs): a 3 MB wheel with
no Python dependencies that compiles a JSON schema to a token-level matcher in milliseconds, on CPU, for
any Hugging Face tokenizer. xgrammar, vLLM's default, pulls triton and apache-tvm-ffi on Linux; outlines
is a framework around such an engine. Both would be heavy for a CPU laptop install.
"""

from __future__ import annotations

import json
from functools import lru_cache

import torch

MISSING_LLGUIDANCE = "structured answers on the transformers backend need llguidance: `pip install llguidance`"
# Compact JSON with the separators a person writes: a small model follows the example it was shown, and no
# free whitespace means no run of blank lines to the token limit.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def _llguidance():
    try:
        import llguidance
        import llguidance.hf
        import llguidance.torch
    except ImportError as exc:
        raise ImportError(MISSING_LLGUIDANCE) from exc
    return llguidance


@lru_cache(maxsize=4)
def _llg_tokenizer(tokenizer, n_vocab: int):
    # Building the token trie walks the whole vocabulary (~0.5 s); one per tokenizer and vocabulary size.
    return _llguidance().hf.from_tokenizer(tokenizer, n_vocab=n_vocab, eos_token=tokenizer.eos_token_id)


def json_grammar(schema: dict) -> str:
    """The llguidance grammar of a JSON schema, with the compact separators above."""
    return _grammar(json.dumps(schema, sort_keys=True))


@lru_cache(maxsize=256)
def _grammar(schema_json: str) -> str:
    # One per distinct schema: a user's per-input schema recurs for each of its requests in a rerun.
    return _llguidance().LLMatcher.grammar_from_json_schema(json.loads(schema_json), defaults=JSON_OPTIONS)


def unpack_bitmask(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """(B, ceil(V/32)) int32 words, bit j of word w = token 32w+j allowed -> (B, V) bool."""
    shifts = torch.arange(32, dtype=torch.int32)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1  # (B, W, 32)
    return bits.flatten(1)[:, :vocab].bool()


def schema_matcher(tokenizer, schema: dict, n_vocab: int):
    """An llguidance matcher that follows one answer's tokens under its schema."""
    llg = _llguidance()
    matcher = llg.LLMatcher(_llg_tokenizer(tokenizer, n_vocab), json_grammar(schema))
    if matcher.is_error():
        raise ValueError(f"the answer schema does not compile: {matcher.get_error()}")
    return matcher


def eos_only_mask(tokenizer, n_vocab: int) -> torch.Tensor:
    """The (ceil(V/32),) bitmask word row that allows EOS alone."""
    row = torch.zeros(_llguidance().torch.get_bitmask_shape(1, n_vocab)[1], dtype=torch.int32)
    row[tokenizer.eos_token_id // 32] = 1 << (tokenizer.eos_token_id % 32)
    return row


def fill_allowed(matcher, bitmask: torch.Tensor, row: int, eos_only: torch.Tensor) -> None:
    """Write into bitmask[row] the tokens that may come next: the grammar's, or EOS alone once it stopped or failed."""
    if matcher.is_stopped() or matcher.is_error():
        bitmask[row] = eos_only
    else:
        _llguidance().torch.fill_next_token_bitmask(matcher, bitmask, row)


def mask_disallowed(scores: torch.Tensor, bitmask: torch.Tensor, n_vocab: int) -> torch.Tensor:
    """scores (B, >= V) with -inf at every token the (B, ceil(V/32)) bitmask leaves out (and past the vocabulary)."""
    allowed = unpack_bitmask(bitmask, n_vocab).to(scores.device)  # (B, V)
    width = min(scores.shape[-1], n_vocab)
    masked = scores.clone()
    masked[:, :width] = scores[:, :width].masked_fill(~allowed[:, :width], float("-inf"))
    masked[:, width:] = float("-inf")
    return masked


class SchemaLogitsProcessor:
    """Set to -inf, row by row, every token that cannot continue a JSON answer valid under the schema.

    One llguidance matcher per row, on that row's own schema (per-input schemas: explicit values are spans of
    that row's input), follows that row's tokens. Once a row's JSON is closed (the matcher stops),
    or if the matcher ever refused a token, only EOS is allowed: the row ends, and generate() pads it.
    """

    def __init__(self, tokenizer, schemas: list[dict], prompt_len: int, n_vocab: int):
        self.matchers = [schema_matcher(tokenizer, schema, n_vocab) for schema in schemas]
        self.bitmask = _llguidance().torch.allocate_token_bitmask(len(schemas), n_vocab)
        self.prompt_len, self.n_vocab = prompt_len, n_vocab
        self.eos_only = eos_only_mask(tokenizer, n_vocab)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        started = input_ids.shape[1] > self.prompt_len
        for row, matcher in enumerate(self.matchers):
            if started and not matcher.is_stopped():
                matcher.consume_token(int(input_ids[row, -1]))
            fill_allowed(matcher, self.bitmask, row, self.eos_only)
        return mask_disallowed(scores, self.bitmask, self.n_vocab)

    def errors(self) -> list[str | None]:
        """Per row, the matcher's error (a token the grammar refused), if any."""
        return [m.get_error() if m.is_error() else None for m in self.matchers]


class RowsMasker:
    """The grammar side of kgen.teachers.decode's loop: rows come and go, each with its own matcher."""

    def __init__(self, tokenizer, n_vocab: int):
        self.n_vocab, self.eos_only = n_vocab, eos_only_mask(tokenizer, n_vocab)
        self.bitmask = _llguidance().torch.allocate_token_bitmask(1, n_vocab)

    def mask(self, matchers: list, scores: torch.Tensor) -> torch.Tensor:
        """scores (n, V) with -inf at every token row i's matcher does not allow next."""
        if self.bitmask.shape[0] < len(matchers):
            self.bitmask = _llguidance().torch.allocate_token_bitmask(len(matchers), self.n_vocab)
        bitmask = self.bitmask[: len(matchers)]
        for row, matcher in enumerate(matchers):
            fill_allowed(matcher, bitmask, row, self.eos_only)
        return mask_disallowed(scores, bitmask, self.n_vocab)

    def consume(self, matchers: list, tokens: list[int]) -> None:
        """Move each row's matcher past the token chosen for it."""
        for matcher, token in zip(matchers, tokens):
            if not matcher.is_stopped():
                matcher.consume_token(token)
