"""Batched decoding for the transformers backend, without the work `generate()` repeats or wastes on a CPU.

`generate()` pads a batch to its longest prompt, computes the instructions every prompt shares once per prompt,
concatenates its key/value cache anew at every step and runs every row until the last one ends. Here:

- prompts are taken in token order, so that prompts sharing a beginning (the chat header and instructions; then the
  same one-shot example) come one after another, and each is prefilled alone (no padding) on top of the keys/values
  of the tokens it shares with the prompt before it: shared tokens are computed once per run of such prompts;
- the rows being answered decode together, one token a step, their keys/values in one preallocated
  (slots, kv_heads, capacity, head_dim) buffer per layer, row i holding its tokens in columns 0 .. length_i - 1;
- a finished row leaves the batch at once and the next waiting prompt takes its place.

Each step does what `generate()` does for greedy or sampled decoding with kgen's settings (repetition penalty,
then the schema mask, then temperature and top-p; argmax or a multinomial draw), with each row at the positions and
attention it has under `generate()`'s left padding; only the float rounding of the batched matrix products differs.
The bench (bench/bench_teacher.py) compares the answers with `generate()`'s on the same prompts.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

# Model families whose attention layers all attend to every earlier token and read and write keys/values
# through `cache.update`: a 4D mask and this module's cache stand in for generate()'s.
FULL_ATTENTION_TYPES = ("llama", "mistral", "qwen2", "qwen3")
# generation_config fields that add no logits processor once kgen's own settings are passed.
NEUTRAL_GENERATION_FIELDS = {
    "bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "max_length", "max_new_tokens",
    "do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "use_cache", "transformers_version",
    "_from_model_config", "output_attentions", "output_hidden_states", "return_dict_in_generate", "cache_implementation",
}


def supports_fast_decoding(lm) -> bool:
    """True for a model this module decodes exactly as generate() would; other models go through generate()."""
    config = lm.config
    if config.model_type not in FULL_ATTENTION_TYPES or getattr(config, "use_sliding_window", False):
        return False
    if getattr(config, "sliding_window", None) is not None and config.model_type == "mistral":
        return False
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return False
    extra = set(lm.generation_config.to_diff_dict()) - NEUTRAL_GENERATION_FIELDS
    return not extra


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """How many leading tokens a and b share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def cache_keyword(lm) -> str:
    """The name under which this transformers version's forward() takes the cache (`cache` since 5.2x)."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


class PromptCache:
    """What one prompt's prefill writes to: the keys/values of the prefix it shares, then its own after them."""

    def __init__(self, prefix: list[tuple[torch.Tensor, torch.Tensor]] | None):
        self.layers = list(prefix) if prefix else []

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx < len(self.layers):  # (1, kv_heads, P + S, head_dim)
            old_k, old_v = self.layers[layer_idx]
            keys, values = torch.cat([old_k, keys], dim=-2), torch.cat([old_v, values], dim=-2)
            self.layers[layer_idx] = (keys, values)
        else:
            self.layers.append((keys, values))
        return keys, values


class SlotCache:
    """Keys and values of the rows being decoded: (slots, kv_heads, capacity, head_dim) per layer.

    Row i holds its tokens in columns 0 .. lengths[i] - 1; a step writes each row's new token at its own length, and
    attention reads columns 0 .. max length, the ones past a row's length masked out.
    """

    def __init__(self, n_layers: int, slots: int, kv_heads: int, head_dim: int, capacity: int, limit: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.limit = limit  # the longest a row can get: capacity grows up to it
        self.lengths: list[int] = []

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def put(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Add a prefilled row (per layer (1, kv_heads, L, head_dim) keys and values) as the last row."""
        length = layers[0][0].shape[2]
        self._fit(length + 1)
        slot = self.rows
        for k, v, (row_k, row_v) in zip(self.keys, self.values, layers):
            k[slot, :, :length] = row_k[0]
            v[slot, :, :length] = row_v[0]
        self.lengths.append(length)

    def drop(self, row: int) -> None:
        """Remove a row; the last row moves into its place (callers reorder their own lists the same way)."""
        last = self.rows - 1
        if row != last:
            width = self.lengths[last]
            for k, v in zip(self.keys, self.values):
                k[row, :, :width] = k[last, :, :width]
                v[row, :, :width] = v[last, :, :width]
            self.lengths[row] = self.lengths[last]
        self.lengths.pop()

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(positions (rows, 1), attention mask (rows, 1, 1, width)) of the next step; grows the buffers if needed."""
        self._fit(max(self.lengths) + 1)
        device = self.keys[0].device
        lengths = torch.tensor(self.lengths, device=device)
        width = int(lengths.max()) + 1
        mask = torch.arange(width, device=device)[None, :] <= lengths[:, None]  # (rows, width): own tokens + new
        self._columns, self._width = lengths, width
        return lengths[:, None], mask[:, None, None, :]

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write the step's (rows, kv_heads, 1, head_dim) keys/values at each row's length; return the rows' views."""
        n, columns, width = self.rows, self._columns, self._width
        rows = torch.arange(n, device=keys.device)
        self.keys[layer_idx][rows, :, columns] = keys[:, :, 0]
        self.values[layer_idx][rows, :, columns] = values[:, :, 0]
        return self.keys[layer_idx][:n, :, :width], self.values[layer_idx][:n, :, :width]

    def advance(self) -> None:
        self.lengths = [n + 1 for n in self.lengths]

    def clear(self) -> None:
        self.lengths = []

    def _fit(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = min(max(needed, self.capacity + self.capacity // 2), max(self.limit, needed))
        for layers in (self.keys, self.values):
            for i, old in enumerate(layers):
                new = old.new_zeros((*old.shape[:2], capacity, old.shape[3]))
                new[:, :, : old.shape[2]] = old
                layers[i] = new


@dataclass
class Row:
    """One prompt being answered."""

    index: int
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    state: object = None  # per-row decoding state of the caller (e.g. a grammar matcher)


@dataclass(kw_only=True)
class StepRules:
    """How the next token of each row is chosen and when a row is done; the caller's, run once per step.

    choose(rows, logits (n, V) float32) -> (n,) next tokens; done(row) -> bool, after the token was appended.
    """

    choose: Callable[[list[Row], torch.Tensor], torch.Tensor]
    done: Callable[[Row], bool]


class Decoder:
    """Decode many prompts with one model: shared beginnings computed once, each prompt prefilled alone, rows batched."""

    def __init__(self, lm, batch_size: int):
        self.lm, self.batch_size = lm, batch_size
        self.cache_kw = cache_keyword(lm)
        config = lm.config
        self.n_layers = config.num_hidden_layers
        self.kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.device = lm.device
        self.dtype = next(lm.parameters()).dtype
        self._last = None  # (prompt, keys/values per layer) of the last prompt prefilled

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        """Last position's logits, (B, V) float32, as generate() takes them."""
        out = self.lm(input_ids=ids, position_ids=positions, attention_mask=mask, use_cache=True,
                      logits_to_keep=1, **{self.cache_kw: cache})
        return out.logits[:, -1, :].to(dtype=torch.float32, copy=True)

    def prefill(self, prompt: list[int], prefix: list[tuple[torch.Tensor, torch.Tensor]] | None):
        """(the prompt's keys/values per layer, its last logits (1, V)), computed on top of a prefix's keys/values."""
        start = prefix[0][0].shape[2] if prefix else 0
        cache = PromptCache(prefix)
        ids = torch.tensor([prompt[start:]], device=self.device)
        positions = torch.arange(start, len(prompt), device=self.device)[None]
        logits = self._forward(ids, positions, _causal_mask(len(prompt) - start, start, self.device), cache)
        return cache.layers, logits

    def _reusable(self, prompt: list[int]):
        """Keys/values of the leading tokens this prompt shares with the last one prefilled (views; None if none)."""
        if self._last is None:
            return None
        last_prompt, layers = self._last
        shared = min(common_prefix_length(last_prompt, prompt), len(prompt) - 1)  # one token left to compute
        return [(k[:, :, :shared], v[:, :, :shared]) for k, v in layers] if shared else None

    def run(self, rows: list[Row], rules: StepRules, max_new_tokens: int) -> Iterator[tuple[Row, Exception | None]]:
        """Yield (row, None) for each row once done, in the order they finish; (row, error) for a row that failed."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: r.prompt)  # prompts with a common beginning one after another
        self._last = None
        longest = max(len(r.prompt) for r in rows)
        cache = SlotCache(self.n_layers, self.batch_size, self.kv_heads, self.head_dim,
                          capacity=longest + min(max_new_tokens, 64), limit=longest + max_new_tokens,
                          dtype=self.dtype, device=self.device)
        waiting, active = deque(rows), []
        while waiting or active:
            while waiting and len(active) < self.batch_size:
                yield from self._admit(waiting.popleft(), cache, active, rules, max_new_tokens)
            if active:
                yield from self._step(cache, active, rules, max_new_tokens)

    def _admit(self, row: Row, cache: SlotCache, active: list[Row], rules: StepRules,
               max_new_tokens: int) -> Iterator[tuple[Row, Exception | None]]:
        """Prefill a waiting row and pick its first token; it joins the batch unless that already ended it."""
        try:
            layers, logits = self.prefill(row.prompt, self._reusable(row.prompt))
            self._last = (row.prompt, layers)
            token = int(rules.choose([row], logits)[0])
        except (RuntimeError, ValueError) as exc:  # e.g. out of memory, a prompt over the context length
            yield row, exc
            return
        row.tokens.append(token)
        if rules.done(row) or len(row.tokens) >= max_new_tokens:
            yield row, None
            return
        cache.put(layers)
        active.append(row)

    def _step(self, cache: SlotCache, active: list[Row], rules: StepRules,
              max_new_tokens: int) -> Iterator[tuple[Row, Exception | None]]:
        """One token for every active row; finished rows leave the batch."""
        try:
            positions, mask = cache.step_inputs()
            ids = torch.tensor([[r.tokens[-1]] for r in active], device=self.device)
            tokens = rules.choose(active, self._forward(ids, positions, mask, cache)).tolist()
        except (RuntimeError, ValueError) as exc:
            failed = list(active)
            cache.clear()
            active.clear()
            for row in failed:
                yield row, exc
            return
        cache.advance()
        finished = []
        for i, (row, token) in enumerate(zip(active, tokens)):
            row.tokens.append(token)
            if rules.done(row) or len(row.tokens) >= max_new_tokens:
                finished.append(i)
        for i in reversed(finished):  # from the back: a dropped row's place is taken by the last row
            row = active[i]
            cache.drop(i)
            active[i] = active[-1]
            active.pop()
            yield row, None


def _causal_mask(queries: int, past: int, device) -> torch.Tensor:
    """(1, 1, queries, past + queries) bool: query q sees every key up to its own position past + q."""
    keys = torch.arange(past + queries, device=device)
    return (keys[None, :] <= past + torch.arange(queries, device=device)[:, None])[None, None]
