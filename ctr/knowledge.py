"""MSD's Multi-level Knowledge Integration Module (MKIM, paper section 2.2, eqs. 3-8).

Semantic vectors of the target item e_t, the history items e_i and the user e_u
come from the student: cached `distill embed` tables (the fast path), or the
student itself with LoRA adapters inside the forward pass, so the CTR loss
trains the adapters. An MLP feature adaptor maps each into the CTR feature
space (eqs. 3-5); history items are stochastically masked during training with
a probability that depends on the item's train frequency (`mask_by`); the top-k
remaining history items most cosine-similar to e'_t are summed (eqs. 6-8) and
joined with e'_t (`fusion`); e_item and e'_u join the backbone's inputs.

How the top-k sum joins e'_t (`fusion`): the paper adds it element-wise. With an
oracle as item vector that blurs the target's own vector with its neighbours'
(issue 21, point 7), so the target keeps its own path: "concat" passes e'_t and
the sum as two fields, "gate" adds the sum through a learned per-dimension gate
sigmoid(W [e'_t, sum]), "add" is the paper's sum, "none" keeps e'_t alone
(ablation "w/o item fusion"). docs/ctr.md gives the validation figures behind
the default.

Which items are masked (`mask_by`): "frequent" (probability rate * log(1 + n) /
log(1 + n_max), n = train exposures: frequent items dominate histories and have
well-trained ID embeddings, so masking them makes the top-k draw on rarer ones),
"rare" (rate * (1 - that): the rare items, whose few exposures make their
neighbours less reliable, are dropped more) or "uniform" (rate for every item).

Where the user level comes from (`user_source`), never from a later event:
"history" (default) is the mean of the raw vectors of the sample's own history
items (its clicks strictly before it); "table" is a user table (`distill embed
--users`, or the mean over a users.jsonl history) built from users.jsonl, each
user's record a snapshot at that user's time (ctr.user_table): their vector
feeds their rows with ts after that time only, earlier rows get the zero vector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctr.data import Batch, Prepared
from ctr.models.layers import mlp
from ground.vectors import ITEM_TABLE, USER_TABLE, mean_pool, read_table
from ground.errors import ConfigError, RecordError


def masking_probs(item_counts: torch.Tensor, rate: float, by: str = "frequent") -> torch.Tensor:
    """(K + 1,) masking probability per item key; 0 for padding.

    frequent: rate * log(1 + n) / log(1 + n_max); rare: rate * (1 - that); uniform: rate (n = train exposures).
    """
    scaled = torch.log1p(item_counts.float())
    share = scaled / scaled.max().clamp(min=1e-12)  # (K + 1,) in [0, 1], 1 for the most frequent item
    probs = rate * {"frequent": share, "rare": 1 - share, "uniform": torch.ones_like(share)}[by]
    probs[0] = 0.0
    return probs


def frequency_mask(history: torch.Tensor, probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, L) True where a real history item survives masking; item key k is dropped with probability probs[k]."""
    draw = torch.rand(history.shape, generator=generator, device=history.device)  # (B, L)
    return (history > 0) & (draw >= probs[history])


def topk_sum(target: torch.Tensor, history: torch.Tensor, keep: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of the k history vectors most cosine-similar to the target, among kept positions (eqs. 6-8).

    target (B, D), history (B, L, D), keep (B, L) bool -> (B, D); a row with fewer than k kept items sums those.
    """
    k = min(k, history.shape[1])
    if k == 0:
        return torch.zeros_like(target)
    sim = F.cosine_similarity(target.unsqueeze(1), history, dim=-1)  # (B, L)
    sim = sim.masked_fill(~keep, float("-inf"))  # masked and padded positions are never picked
    top, idx = sim.topk(k, dim=1)  # (B, k)
    picked = history.gather(1, idx.unsqueeze(-1).expand(-1, -1, history.shape[-1]))  # (B, k, D)
    return (picked * torch.isfinite(top).unsqueeze(-1)).sum(dim=1)  # (B, D)


def standardize(vectors: torch.Tensor, present: torch.Tensor, fit: torch.Tensor | None = None) -> torch.Tensor:
    """Z-score each dimension with the mean and std of the `fit` rows (default: the present ones); absent rows stay
    zero (the average item after scaling).

    Mean-pooled decoder states share one dominant direction (SmolLM2-135M on ML-1M titles: the mean vector's
    norm is 37 of an average 40), so raw vectors are nearly parallel: cosine top-k picks almost at random and
    the adaptor sees mostly a constant. Centring and scaling each dimension leaves what tells items apart.
    The statistics come from the train items only (`fit`), like every other fitted quantity.
    """
    mean, std = standard_stats(vectors, present if fit is None else fit & present)
    out = (vectors - mean) / std
    return out * present.unsqueeze(1).to(out.dtype)


def standard_stats(vectors: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Dk,) mean and (Dk,) std of the chosen rows: what `standardize` applies (serving applies it too)."""
    chosen = vectors[rows]
    if len(chosen) < 2:
        raise RecordError(f"{int(rows.sum())} vector(s) to take z-score statistics from: too few (are the "
                          "knowledge tables' ids those of the prepared folder?)")
    return chosen.mean(0), chosen.std(0).clamp(min=1e-6)


def aligned_table(path: Path, ids: list[str]) -> tuple[torch.Tensor, int]:
    """(len(ids) + 1, D) vectors in key order (row 0 and ids absent from the table are zeros), and how many were absent."""
    table_ids, vectors = read_table(path)
    rows = {rid: i for i, rid in enumerate(table_ids)}
    out = np.zeros((len(ids) + 1, vectors.shape[1]), np.float32)
    found = [(key, rows[rid]) for key, rid in enumerate(ids, start=1) if rid in rows]
    if found:
        keys, positions = zip(*found)
        out[list(keys)] = vectors[list(positions)]
    return torch.from_numpy(out), len(ids) - len(found)


class TableVectors(nn.Module):
    """Frozen vectors from `distill embed` tables; absent items/users are zero vectors (counted in `missing`).

    Args:
        folder: the tables' folder.
        data: the prepared folder (item and user key order).
        standardized: z-score each dimension (statistics of the train items, `fit_items`, only).
        fit_items: (K + 1,) bool, the items whose vectors give the z-score statistics (train items).
        users: read the user table (user_source "table"); otherwise every user vector is zero.
        fit_users: (U + 1,) bool, the users whose vectors give the user z-score statistics (ctr.user_table.train_window_users).
    """

    def __init__(self, folder: str | Path, data: Prepared, standardized: bool = True,
                 fit_items: torch.Tensor | None = None, users: bool = True, fit_users: torch.Tensor | None = None):
        super().__init__()
        folder = Path(folder)
        if not (folder / ITEM_TABLE).exists():
            raise RecordError(f"{folder / ITEM_TABLE}: no such file (run `distill embed` first)")
        items, missing_items = aligned_table(folder / ITEM_TABLE, data.item_ids)
        table = users and (folder / USER_TABLE).exists()
        user_vectors, missing_users = (aligned_table(folder / USER_TABLE, data.user_ids) if table
                                       else (torch.zeros(len(data.user_ids) + 1, items.shape[1]), len(data.user_ids)))
        if standardized:
            items = standardize(items, items.abs().sum(1) > 0, fit_items)
            present = user_vectors.abs().sum(1) > 0
            if int((present if fit_users is None else present & fit_users).sum()) >= 2:
                user_vectors = standardize(user_vectors, present, fit_users)
        self.register_buffer("item_vectors", items, persistent=False)  # (K + 1, Dk)
        self.register_buffer("user_vectors", user_vectors, persistent=False)  # (U + 1, Dk)
        self.dim = items.shape[1]
        self.missing = {"items": missing_items, "users": missing_users if users else None}

    def items(self, keys: torch.Tensor) -> torch.Tensor:
        return self.item_vectors[keys]  # (..., Dk)

    def users(self, keys: torch.Tensor) -> torch.Tensor:
        return self.user_vectors[keys]  # (B, Dk)


def history_mean(vectors: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, Dk) mean of the history's vectors over real positions whose vector is known; zeros for none.

    vectors (n, Dk): the batch's distinct items; positions (B, L): each history entry's row in `vectors`;
    mask (B, L) bool: real entries. A weighted embedding bag: no (B, L, Dk) tensor is built.
    """
    known = mask & (vectors.abs().sum(-1) > 0)[positions]  # (B, L)
    weights = known.to(vectors.dtype)
    total = F.embedding_bag(positions, vectors, per_sample_weights=weights, mode="sum")  # (B, Dk)
    return total / weights.sum(1, keepdim=True).clamp(min=1)


def knowledge_fields(fusion: str, user_level: bool) -> int:
    """How many (B, dim) fields MSD hands its backbone: e_item (and the top-k sum beside it), e'_u."""
    return 1 + (fusion == "concat") + user_level


class MSD(nn.Module):
    """A backbone (DIN or DeepFM, built with n_extra = knowledge_fields(...)) plus MKIM's item and user fields.

    Args:
        backbone: the CTR model; receives the knowledge fields as `extra` (B, X, dim).
        vectors: TableVectors or StudentVectors (items(keys), users(keys), dim).
        item_counts: (K + 1,) train frequency per item key, for the masking probabilities.
        dim: backbone embedding width (the adaptors' output).
        adaptor_hidden: hidden width of the feature adaptors.
        top_k: history items fused with the target.
        mask_rate: the largest masking probability (see masking_probs).
        mask_by: which items are masked more: "frequent", "rare" or "uniform".
        fusion: how the top-k sum joins e'_t: "concat", "gate", "add" (the paper's) or "none".
        user_level: False drops e'_u (ablation "w/o user level").
        user_source: "history" (mean over the sample's own history) or "table" (a snapshot table).
        user_as_of: (U + 1,) int64, each user key's snapshot time (ctr.user_table.user_times): the user's table
            vector feeds their rows with ts after it only (user_source "table").
    """

    def __init__(self, *, backbone: nn.Module, vectors: nn.Module, item_counts: torch.Tensor, dim: int,
                 adaptor_hidden: int, top_k: int, mask_rate: float, mask_by: str = "frequent",
                 fusion: str = "gate", user_level: bool = True, user_source: str = "history",
                 user_as_of: torch.Tensor | None = None):
        super().__init__()
        if user_level and user_source == "table" and user_as_of is None:
            raise ValueError("a user table needs its snapshot time (user_as_of)")
        self.backbone, self.vectors = backbone, vectors
        self.top_k, self.fusion, self.user_level = top_k, fusion, user_level
        self.user_source = user_source
        self.register_buffer("user_as_of", user_as_of, persistent=False)  # (U + 1,) or None
        # e_t and e_i share one adaptor, so their cosine similarity compares like with like.
        self.item_adaptor = mlp([vectors.dim, adaptor_hidden, dim], last_activation=False)
        self.user_adaptor = mlp([vectors.dim, adaptor_hidden, dim], last_activation=False) if user_level else None
        self.gate = nn.Linear(2 * dim, dim) if fusion == "gate" else None
        self.register_buffer("mask_probs", masking_probs(item_counts, mask_rate, mask_by), persistent=False)

    def item_fields(self, e_t: torch.Tensor, e_i: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
        """[(B, dim)...]: e'_t with the top-k sum of the kept history joined as `fusion` says."""
        if self.fusion == "none":
            return [e_t]
        keep = frequency_mask(batch.history, self.mask_probs) if self.training else batch.mask  # (B, L)
        near = topk_sum(e_t, e_i, keep, self.top_k)  # (B, dim)
        if self.fusion == "concat":
            return [e_t, near]
        if self.fusion == "gate":
            return [e_t + torch.sigmoid(self.gate(torch.cat([e_t, near], dim=1))) * near]
        return [e_t + near]  # "add": eq. 8 and the paper's element-wise addition

    def user_vectors(self, raw: torch.Tensor, inverse: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, Dk) the user's raw semantic vector, from nothing later than the sample.

        raw (n, Dk): the raw vectors of the batch's distinct items; inverse (B, 1 + L): the target's and the
        history items' rows in it."""
        if self.user_source == "history":
            return history_mean(raw, inverse[:, 1:], batch.mask)
        users, inverse = torch.unique(batch.user_key, return_inverse=True)  # (u,), (B,)
        table = F.embedding(inverse, self.vectors.users(users))  # (B, Dk); F.embedding: see knowledge()
        # each user's snapshot feeds their later rows only (serving: a request is after every snapshot)
        return table * (batch.ts > self.user_as_of[batch.user_key]).unsqueeze(1).to(table.dtype)

    def knowledge(self, batch: Batch) -> torch.Tensor:
        """(B, X, dim): e_item (the top-k sum beside it with "concat") and e'_u."""
        keys = torch.cat([batch.item.unsqueeze(1), batch.history], dim=1)  # (B, 1 + L)
        # Each distinct item is looked up (or encoded by the student) and adapted once: a batch of 1024
        # samples x 21 positions holds ~3k distinct items, and the adaptor is the costliest layer otherwise.
        unique, inverse = torch.unique(keys, return_inverse=True)  # (n,), (B, 1 + L)
        raw = self.vectors.items(unique)  # (n, Dk)
        # F.embedding, not adapted[inverse]: indexing's backward (index_put_ with accumulate) adds the repeated
        # rows' gradients in a thread-dependent order on CPU, so training on 2 threads was not bit-reproducible.
        adapted = F.embedding(inverse, self.item_adaptor(raw))  # (B, 1 + L, dim)
        parts = self.item_fields(adapted[:, 0], adapted[:, 1:], batch)
        if self.user_level:
            parts.append(self.user_adaptor(self.user_vectors(raw, inverse, batch)))  # (B, dim)
        return torch.stack(parts, dim=1)  # (B, X, dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.backbone(batch, self.knowledge(batch))  # (B,) logits


def lora_student(student: str, r: int, alpha: int, dropout: float, target_modules: list[str],
                 adapter: str | Path | None = None, top_layers: int | None = None):
    """(PEFT model, tokenizer): the student (a distilled adapter merged first) with CTR LoRA adapters on top.

    A fresh adapter starts with B = 0, so before the first step the vectors equal the cached tables';
    `adapter` loads a CTR adapter saved by an earlier run instead. `top_layers`: adapters in the last N decoder
    layers only (the layers below stay frozen, so StudentVectors runs them once per text).
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    from distill.export import load_causal_lm

    lm, tokenizer = load_causal_lm(student)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if adapter is not None:
        return PeftModel.from_pretrained(lm, str(adapter), is_trainable=True), tokenizer
    layers = {}
    if top_layers is not None:
        n = lm.config.get_text_config().num_hidden_layers
        if not 1 <= top_layers <= n:
            raise ConfigError(f"lora_layers must be 1..{n} (the student's decoder layers), got {top_layers}")
        layers = {"layers_to_transform": list(range(n - top_layers, n)), "layers_pattern": "layers"}
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), **layers)
    return get_peft_model(lm, config), tokenizer


class _Reached(Exception):
    """Raised by a pre-hook to stop a forward pass at the layer whose input it wanted."""


def layer_inputs(body: nn.Module, start: int, enc: dict) -> torch.Tensor:
    """(n, T, D) the hidden states that enter decoder layer `start`; the layers from `start` on are not run."""
    seen = {}

    def hook(module, args, kwargs):
        seen["states"] = args[0] if args else kwargs["hidden_states"]
        raise _Reached

    handle = body.layers[start].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        body(**enc, use_cache=False)
    except _Reached:
        pass
    finally:
        handle.remove()
    return seen["states"]


def upper_stack(body: nn.Module, start: int) -> nn.Module:
    """The decoder stack from layer `start` on, as a model of its own: fed `inputs_embeds` (the states entering
    layer `start`) it returns what the whole stack returns. Shares every weight (and adapter) with `body`."""
    import copy

    upper = copy.copy(body)
    upper._modules = {**body._modules, "layers": nn.ModuleList(list(body.layers)[start:])}
    upper.config = copy.copy(body.config)
    upper.config.num_hidden_layers = len(upper.layers)
    if getattr(upper.config, "layer_types", None):
        upper.config.layer_types = list(upper.config.layer_types)[start:]
    return upper


class StudentVectors(nn.Module):
    """Vectors computed by the LoRA student inside the forward pass: each batch's distinct items/users once.

    Same text and pooling as `distill embed` (mean of the last hidden states). In training the
    vectors carry gradients to the adapters; in evaluation they are computed once per key, without
    gradients, and cached until the module is put back into training mode. With `frozen_below` (adapters in
    the layers from that index on only) the layers below run once per text, their output kept, and a step runs
    the upper layers alone: with 2 of SmolLM2's 30 layers, a fifteenth of the student's compute per step.
    """

    def __init__(self, peft_model, tokenizer, item_texts: list[str], user_texts: list[str], max_length: int,
                 chunk: int = 64, frozen_below: int = 0):
        super().__init__()
        self.peft_model, self.tokenizer = peft_model, tokenizer
        self.body = peft_model.get_base_model().base_model  # the decoder stack (e.g. LlamaModel), LoRA layers inside
        self.texts = {"items": ["", *item_texts], "users": ["", *user_texts]}  # key 0: padding / absent -> zeros
        self.max_length, self.chunk = max_length, chunk
        self.dim = self.body.config.get_text_config().hidden_size
        self.cache: dict[str, dict[int, torch.Tensor]] = {"items": {}, "users": {}}
        self.frozen_below = frozen_below
        # not a registered submodule: its weights are the body's and must not appear twice in the state dict
        self.__dict__["upper"] = upper_stack(self.body, frozen_below) if frozen_below else None
        self.lower: dict[str, dict[int, torch.Tensor]] = {"items": {}, "users": {}}  # (T, Dk) entering `upper`

    def train(self, mode: bool = True):
        self.cache = {"items": {}, "users": {}}  # the adapters are about to change
        return super().train(mode)

    def tokens(self, texts: list[str]) -> dict:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def encode(self, kind: str, keys: list[int]) -> torch.Tensor:
        """(N, Dk) mean-pooled last hidden states of the keys' texts, in chunks."""
        out = []
        for start in range(0, len(keys), self.chunk):
            chunk = keys[start : start + self.chunk]
            if self.upper is None:
                enc = self.tokens([self.texts[kind][k] for k in chunk])
                hidden = self.body(**enc, use_cache=False).last_hidden_state  # (n, T, Dk)
                out.append(mean_pool(hidden.float(), enc["attention_mask"]))
                continue
            states = [self.lower[kind][k] for k in chunk]
            mask = nn.utils.rnn.pad_sequence([torch.ones(len(h), dtype=torch.long) for h in states], batch_first=True)
            padded = nn.utils.rnn.pad_sequence(states, batch_first=True)  # (n, T, Dk), right-padded like the tokens
            hidden = self.upper(inputs_embeds=padded, attention_mask=mask, use_cache=False).last_hidden_state
            out.append(mean_pool(hidden.float(), mask))
        return torch.cat(out)

    def fill_lower(self, kind: str, keys: list[int]) -> None:
        """Run the frozen layers once for each text not yet seen; keep what enters the upper stack."""
        todo = [k for k in keys if k not in self.lower[kind]]
        for start in range(0, len(todo), self.chunk):
            chunk = todo[start : start + self.chunk]
            enc = self.tokens([self.texts[kind][k] for k in chunk])
            with torch.no_grad():
                states = layer_inputs(self.body, self.frozen_below, enc)
            for k, h, n in zip(chunk, states, enc["attention_mask"].sum(1).tolist()):
                self.lower[kind][k] = h[:n].clone()

    def lookup(self, kind: str, keys: torch.Tensor) -> torch.Tensor:
        """(..., Dk) vectors of item or user keys; key 0 -> zeros."""
        unique, inverse = torch.unique(keys, return_inverse=True)  # (n,), keys.shape
        wanted = [k for k in unique.tolist() if k > 0]
        if self.upper is not None:
            self.fill_lower(kind, wanted)
        if self.training:
            vectors = dict(zip(wanted, self.encode(kind, wanted))) if wanted else {}
        else:
            cache = self.cache[kind]
            todo = [k for k in wanted if k not in cache]
            if todo:
                with torch.no_grad():
                    cache.update(zip(todo, self.encode(kind, todo)))
            vectors = cache
        zero = torch.zeros(self.dim)
        table = torch.stack([vectors[k] if k > 0 else zero for k in unique.tolist()])  # (n, Dk)
        return F.embedding(inverse, table)  # not table[inverse]: see MSD.knowledge

    def items(self, keys: torch.Tensor) -> torch.Tensor:
        return self.lookup("items", keys)

    def users(self, keys: torch.Tensor) -> torch.Tensor:
        return self.lookup("users", keys)
