"""MSD's Multi-level Knowledge Integration Module (MKIM, paper section 2.2, eqs. 3-8).

Semantic vectors of the target item e_t, the history items e_i and the user e_u
come from the student: cached `distill embed` tables (the fast path), or the
student itself with LoRA adapters inside the forward pass, so the CTR loss
trains the adapters. An MLP feature adaptor maps each into the CTR feature
space (eqs. 3-5); history items are stochastically masked during training with
a probability that grows with the item's train frequency; the top-k remaining
history items most cosine-similar to e'_t are summed (eqs. 6-8) and fused with
e'_t by element-wise addition; e_item and e'_u join the backbone's inputs.

Why frequent items are masked more: they dominate histories and their ID
embeddings are already well trained, so without masking the top-k is filled by
the same popular items; masking them makes the fusion also draw on the rarer
items, whose semantic vector is most of what the model knows about them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctr.data import Batch, Prepared
from ctr.models.layers import mlp
from ground.vectors import ITEM_TABLE, USER_TABLE, mean_pool, read_table, write_table
from ground.errors import RecordError
from ground import records as R


def masking_probs(item_counts: torch.Tensor, rate: float) -> torch.Tensor:
    """(K + 1,) masking probability per item key: rate * log(1 + count) / log(1 + max count); 0 for padding."""
    scaled = torch.log1p(item_counts.float())
    probs = rate * scaled / scaled.max().clamp(min=1e-12)
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


def standardize(vectors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Z-score each dimension over the present rows; absent rows stay zero (the average item after scaling).

    Mean-pooled decoder states share one dominant direction (SmolLM2-135M on ML-1M titles: the mean vector's
    norm is 37 of an average 40), so raw vectors are nearly parallel: cosine top-k picks almost at random and
    the adaptor sees mostly a constant. Centring and scaling each dimension leaves what tells items apart.
    """
    mean, std = standard_stats(vectors, present)
    out = (vectors - mean) / std
    return out * present.unsqueeze(1).to(out.dtype)


def standard_stats(vectors: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Dk,) mean and (Dk,) std of the present rows: what `standardize` applies (serving applies it too)."""
    rows = vectors[present]
    return rows.mean(0), rows.std(0).clamp(min=1e-6)


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


def write_user_mean_table(knowledge: str | Path, users: str | Path) -> int:
    """Write knowledge/user_embeddings.parquet: each user's vector = the mean of the item vectors of their history.

    The cheap user level when the student cannot read every user's text (CPU): users.jsonl histories hold
    train-split clicks only, so no later behaviour leaks in. Users without a known item get no row.
    Returns the number of users written.
    """
    knowledge = Path(knowledge)
    ids, vectors = read_table(knowledge / ITEM_TABLE)
    row = {rid: i for i, rid in enumerate(ids)}
    names, means = [], []
    for user in R.read_records(users, "user"):
        rows = [row[str(i)] for i in user[R.HISTORY] if str(i) in row]
        if rows:
            names.append(str(user[R.USER_ID]))
            means.append(vectors[rows].mean(axis=0))
    write_table(knowledge / USER_TABLE, names, np.asarray(means, np.float32).reshape(len(names), vectors.shape[1]))
    return len(names)


class TableVectors(nn.Module):
    """Frozen vectors from `distill embed` tables; absent items/users are zero vectors (counted in `missing`)."""

    def __init__(self, folder: str | Path, data: Prepared, standardized: bool = True):
        super().__init__()
        folder = Path(folder)
        if not (folder / ITEM_TABLE).exists():
            raise RecordError(f"{folder / ITEM_TABLE}: no such file (run `distill embed` first)")
        items, missing_items = aligned_table(folder / ITEM_TABLE, data.item_ids)
        users, missing_users = (aligned_table(folder / USER_TABLE, data.user_ids) if (folder / USER_TABLE).exists()
                                else (torch.zeros(len(data.user_ids) + 1, items.shape[1]), len(data.user_ids)))
        if standardized:
            items = standardize(items, items.abs().sum(1) > 0)
            users = standardize(users, users.abs().sum(1) > 0) if len(users) > missing_users + 1 else users
        self.register_buffer("item_vectors", items, persistent=False)  # (K + 1, Dk)
        self.register_buffer("user_vectors", users, persistent=False)  # (U + 1, Dk)
        self.dim = items.shape[1]
        self.missing = {"items": missing_items, "users": missing_users}

    def items(self, keys: torch.Tensor) -> torch.Tensor:
        return self.item_vectors[keys]  # (..., Dk)

    def users(self, keys: torch.Tensor) -> torch.Tensor:
        return self.user_vectors[keys]  # (B, Dk)


class MSD(nn.Module):
    """A backbone (DIN or DeepFM, built with n_extra = 1 + user_level) plus MKIM's item and user semantic fields.

    Args:
        backbone: the CTR model; receives the knowledge fields as `extra` (B, X, dim).
        vectors: TableVectors or StudentVectors (items(keys), users(keys), dim).
        item_counts: (K + 1,) train frequency per item key, for the masking probabilities.
        dim: backbone embedding width (the adaptors' output).
        adaptor_hidden: hidden width of the feature adaptors.
        top_k: history items fused with the target.
        mask_rate: masking probability of the most frequent item.
        item_fusion: False keeps e'_t alone (ablation "w/o item fusion").
        user_level: False drops e'_u (ablation "w/o user level").
    """

    def __init__(self, *, backbone: nn.Module, vectors: nn.Module, item_counts: torch.Tensor, dim: int,
                 adaptor_hidden: int, top_k: int, mask_rate: float, item_fusion: bool = True, user_level: bool = True):
        super().__init__()
        self.backbone, self.vectors = backbone, vectors
        self.top_k, self.item_fusion, self.user_level = top_k, item_fusion, user_level
        # e_t and e_i share one adaptor, so their cosine similarity compares like with like.
        self.item_adaptor = mlp([vectors.dim, adaptor_hidden, dim], last_activation=False)
        self.user_adaptor = mlp([vectors.dim, adaptor_hidden, dim], last_activation=False) if user_level else None
        self.register_buffer("mask_probs", masking_probs(item_counts, mask_rate), persistent=False)

    def knowledge(self, batch: Batch) -> torch.Tensor:
        """(B, X, dim): e_item (and e'_u)."""
        keys = torch.cat([batch.item.unsqueeze(1), batch.history], dim=1)  # (B, 1 + L)
        # Each distinct item is looked up (or encoded by the student) and adapted once: a batch of 1024
        # samples x 21 positions holds ~3k distinct items, and the adaptor is the costliest layer otherwise.
        unique, inverse = torch.unique(keys, return_inverse=True)  # (n,), (B, 1 + L)
        adapted = self.item_adaptor(self.vectors.items(unique))[inverse]  # (B, 1 + L, dim)
        e_t, e_i = adapted[:, 0], adapted[:, 1:]
        e_item = e_t
        if self.item_fusion:
            keep = frequency_mask(batch.history, self.mask_probs) if self.training else batch.mask  # (B, L)
            e_item = e_t + topk_sum(e_t, e_i, keep, self.top_k)
        parts = [e_item]
        if self.user_level:
            # Adapted once per distinct user too: a served request is one user for every candidate.
            users, inverse = torch.unique(batch.user_key, return_inverse=True)  # (u,), (B,)
            parts.append(self.user_adaptor(self.vectors.users(users))[inverse])  # (B, dim)
        return torch.stack(parts, dim=1)  # (B, X, dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.backbone(batch, self.knowledge(batch))  # (B,) logits


def lora_student(student: str, r: int, alpha: int, dropout: float, target_modules: list[str], adapter: str | Path | None = None):
    """(PEFT model, tokenizer): the student (a distilled adapter merged first) with CTR LoRA adapters on top.

    A fresh adapter starts with B = 0, so before the first step the vectors equal the cached tables';
    `adapter` loads a CTR adapter saved by an earlier run instead.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    from distill.export import load_causal_lm

    lm, tokenizer = load_causal_lm(student)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if adapter is not None:
        return PeftModel.from_pretrained(lm, str(adapter), is_trainable=True), tokenizer
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules))
    return get_peft_model(lm, config), tokenizer


class StudentVectors(nn.Module):
    """Vectors computed by the LoRA student inside the forward pass: each batch's distinct items/users once.

    Same text and pooling as `distill embed` (mean of the last hidden states). In training the
    vectors carry gradients to the adapters; in evaluation they are computed once per key, without
    gradients, and cached until the module is put back into training mode.
    """

    def __init__(self, peft_model, tokenizer, item_texts: list[str], user_texts: list[str], max_length: int,
                 chunk: int = 64):
        super().__init__()
        self.peft_model, self.tokenizer = peft_model, tokenizer
        self.body = peft_model.get_base_model().base_model  # the decoder stack (e.g. LlamaModel), LoRA layers inside
        self.texts = {"items": ["", *item_texts], "users": ["", *user_texts]}  # key 0: padding / absent -> zeros
        self.max_length, self.chunk = max_length, chunk
        self.dim = self.body.config.get_text_config().hidden_size
        self.cache: dict[str, dict[int, torch.Tensor]] = {"items": {}, "users": {}}

    def train(self, mode: bool = True):
        self.cache = {"items": {}, "users": {}}  # the adapters are about to change
        return super().train(mode)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, Dk) mean-pooled last hidden states, in chunks."""
        out = []
        for start in range(0, len(texts), self.chunk):
            enc = self.tokenizer(texts[start : start + self.chunk], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            hidden = self.body(**enc).last_hidden_state  # (n, T, Dk)
            out.append(mean_pool(hidden.float(), enc["attention_mask"]))
        return torch.cat(out)

    def lookup(self, kind: str, keys: torch.Tensor) -> torch.Tensor:
        """(..., Dk) vectors of item or user keys; key 0 -> zeros."""
        unique, inverse = torch.unique(keys, return_inverse=True)  # (n,), keys.shape
        wanted = [k for k in unique.tolist() if k > 0]
        if self.training:
            vectors = dict(zip(wanted, self.encode([self.texts[kind][k] for k in wanted]))) if wanted else {}
        else:
            cache = self.cache[kind]
            todo = [k for k in wanted if k not in cache]
            if todo:
                with torch.no_grad():
                    cache.update(zip(todo, self.encode([self.texts[kind][k] for k in todo])))
            vectors = cache
        zero = torch.zeros(self.dim)
        table = torch.stack([vectors[k] if k > 0 else zero for k in unique.tolist()])  # (n, Dk)
        return table[inverse]

    def items(self, keys: torch.Tensor) -> torch.Tensor:
        return self.lookup("items", keys)

    def users(self, keys: torch.Tensor) -> torch.Tensor:
        return self.lookup("users", keys)
