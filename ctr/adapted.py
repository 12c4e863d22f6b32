"""MSD's item path pre-computed per trained model, and the per-request rest (issue 26; paper section 3.5).

Of MSD's knowledge module (`ctr.knowledge.MSD.knowledge`), four things depend on an item and the
trained weights alone: its adapted vector e'_t = item_adaptor(z-scored raw vector), e'_t's unit vector
(the cosine top-k is then one product), the gate's item
half W_t e'_t + b (fusion "gate": sigmoid(W [e'_t, near] + b) = sigmoid(W_t e'_t + b + W_n near)) and,
for the user level over the history, the user adaptor's first layer applied to the item's raw vector
(W_u1 mean(raw) = mean(W_u1 raw): the mean of a history commutes with a linear layer). One row per item
holds them (`item_parts`), cached like the raw vectors under the *model's* version, so a new `ctr train`
run never reads another run's rows. What a request still computes (`RequestPath`): the cosine top-k
over its history, the gate's history half, the user adaptor's last layers once, and the backbone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctr.data import Batch


ROW_FORMAT = 2  # the layout of a row (`Layout`): raise it when the layout changes, so old rows are never read


def model_version(model_dir: str | Path, student_version: str, codec: str) -> str:
    """A short hash of the run's weights and config, the student's version, the raw codec (its rounding feeds
    the adaptor) and the row format: the rows of one trained model, as this code lays them out, and nothing else."""
    model_dir = Path(model_dir)
    digest = hashlib.blake2b(digest_size=6)
    for name in ("model.pt", "ctr_config.json"):
        digest.update((model_dir / name).read_bytes())
    digest.update(f"|{student_version}|{codec}|rows{ROW_FORMAT}".encode())
    return digest.hexdigest()


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where each part sits in an item's row: [e'_t | e'_t / |e'_t| | gate item half | user first layer | known]."""

    dim: int  # e'_t width (the backbone's embedding width)
    gate: bool  # fusion "gate": the gate's item half follows e'_t
    user_hidden: int  # user adaptor's first-layer width when the user level reads the history, else 0

    @property
    def width(self) -> int:
        return self.dim * (2 + self.gate) + self.user_hidden + 1

    @classmethod
    def of(cls, model: nn.Module) -> Layout:
        history_user = model.user_level and model.user_source == "history"
        return cls(dim=model.item_adaptor[-1].out_features, gate=model.gate is not None,
                   user_hidden=model.user_adaptor[0].out_features if history_user else 0)


def item_parts(model: nn.Module, raw: torch.Tensor) -> torch.Tensor:
    """(N, W) rows of z-scored raw item vectors (N, Dk): what of MSD's item path depends on the item alone."""
    layout = Layout.of(model)
    adapted = model.item_adaptor(raw)  # (N, dim)
    parts = [adapted, F.normalize(adapted, dim=1, eps=1e-8)]  # the unit vector: cosine similarity is one product
    if layout.gate:
        parts.append(F.linear(adapted, model.gate.weight[:, : layout.dim], model.gate.bias))  # (N, dim)
    if layout.user_hidden:
        parts.append(F.linear(raw, model.user_adaptor[0].weight))  # (N, hidden), the bias is added after the mean
    parts.append((raw.abs().sum(1, keepdim=True) > 0).to(raw.dtype))  # (N, 1) the vector is known
    return torch.cat(parts, dim=1)


def near_sum(unit_t: np.ndarray, unit_h: np.ndarray, e_h: np.ndarray, k: int) -> np.ndarray:
    """(n, dim) sum of the k history rows most cosine-similar to each candidate; one history for all rows.

    unit_t (n, dim), unit_h (L, dim): unit vectors (pre-computed); e_h (L, dim): the history's vectors (a request's
    history has no padding; L may be 0): `ctr.knowledge.topk_sum` with the history shared, so the similarities are
    one (n, dim) x (dim, L) product instead of n copies of the history. The order inside the top k does not change
    a sum, so a partition will do."""
    k = min(k, len(e_h))
    if k == 0:
        return np.zeros((len(unit_t), e_h.shape[1]), np.float32)
    top = np.argpartition(unit_t @ unit_h.T, -k, axis=1)[:, -k:]  # (n, k): numpy's ~14 us in a request, torch's topk ~30
    return column_sum(np.take(e_h, top, axis=0))  # (n, dim)


def column_sum(picked: np.ndarray) -> np.ndarray:
    """(n, dim) sum over the short axis of picked (n, k, dim): k - 1 adds of (n, dim) slices, which for k ~ 3
    take half the time of numpy's reduction over a middle axis."""
    out = picked[:, 0].copy()
    for j in range(1, picked.shape[1]):
        out += picked[:, j]
    return out


class RequestPath:
    """What of MSD a request still computes, from its items' pre-computed rows; the model's constants read once.

    In numpy: a request's part is ~20 small operations on (100, 16) arrays, where torch's dispatch (~5 us an
    operation) costs more than the arithmetic; numpy's is ~1 us. The backbone stays in torch. Holds the weights
    it needs as arrays: the gate's history half, the user adaptor's first bias and its later layers.

    Fused into a DIN backbone (`fold`): e'_u is the same for every candidate, so its share of the MLP's first
    layer, W_1u e'_u, is added to that layer's bias once per request; the layer then multiplies the other
    columns only, and e'_u is never copied n times nor stacked beside the item field."""

    def __init__(self, model: nn.Module):
        self.model, self.layout = model, Layout.of(model)
        self.fusion, self.top_k, self.user_level = model.fusion, model.top_k, model.user_level
        dim = self.layout.dim
        self.gate_near = model.gate.weight[:, dim:].T.detach().numpy().copy() if self.layout.gate else None  # (dim, dim)
        if self.layout.user_hidden:
            self.user_bias = model.user_adaptor[0].bias.detach().numpy().copy()  # (hidden,)
            # the later layers: (W^T, b) of each Linear, a ReLU between two (mlp: Linear, ReLU, Linear, ...)
            self.user_tail = [(m.weight.T.detach().numpy().copy(), m.bias.detach().numpy().copy())
                              for m in model.user_adaptor[1:] if isinstance(m, nn.Linear)]
        self.fold = self.user_level and hasattr(model.backbone, "inputs")  # DIN: the MLP's input, then `dnn`
        if self.fold:  # e'_u is the input's last dim columns (MSD stacks it after the item fields)
            first = model.backbone.dnn[0]
            self.first_weight = first.weight[:, :-dim].detach().clone()  # (H1, width - dim)
            self.first_user = first.weight[:, -dim:].T.detach().numpy().copy()  # (dim, H1)
            self.first_bias = first.bias.detach().numpy().copy()  # (H1,)
            self.mlp_rest = model.backbone.dnn[1:]
            if self.layout.user_hidden:  # the adaptor's last Linear and W_1u are two linear maps: one product
                weight, bias = self.user_tail[-1]
                self.user_fused = [*self.user_tail[:-1], (weight @ self.first_user, bias @ self.first_user + self.first_bias)]

    def item_fields(self, cand: np.ndarray, hist: np.ndarray) -> list[np.ndarray]:
        """[(n, dim)...]: e'_t joined with the top-k sum of the history as the run's `fusion` says."""
        dim = self.layout.dim
        e_t = cand[:, :dim]  # (n, dim)
        if self.fusion == "none":
            return [e_t]
        near = near_sum(cand[:, dim : 2 * dim], hist[:, dim : 2 * dim], hist[:, :dim], self.top_k)  # (n, dim)
        if self.fusion == "concat":
            return [e_t, near]
        if self.fusion == "gate":  # e'_t + sigmoid(W_t e'_t + b + W_n near) * near: the item half was pre-computed
            gate = near @ self.gate_near  # (n, dim), then in place
            gate += cand[:, 2 * dim : 3 * dim]
            torch.sigmoid_(torch.from_numpy(gate))  # torch's sigmoid, in place: ~1 us, scipy's expit ~4
            gate *= near
            gate += e_t
            return [gate]
        return [e_t + near]

    def user_field(self, hist: np.ndarray, user: torch.Tensor | None) -> np.ndarray:
        """(1, dim) e'_u: the user adaptor over the mean of the history's known vectors, or over the user's vector.

        Fused (`fold`): (1, H1) W_1u e'_u + b_1, the first MLP layer's bias for this request."""
        hidden = self.layout.user_hidden
        if not hidden:
            out = self.model.user_adaptor(user.unsqueeze(0)).numpy()  # (1, dim) a stored user's (scaled) vector
            return out @ self.first_user + self.first_bias if self.fold else out
        # one column sum gives both the sum of the first-layer parts and the count of known vectors: an unknown
        # vector (zeros) has zero parts
        total = hist[:, -hidden - 1 :].sum(axis=0)  # (hidden + 1,)
        out = total[:-1] / max(float(total[-1]), 1.0) + self.user_bias  # (hidden,) the mean's first layer
        for weight, bias in self.user_fused if self.fold else self.user_tail:
            out = np.maximum(out, 0) @ weight + bias  # ReLU, then the next Linear (fused: the last one W_1u too)
        return out[None]  # (1, dim), fused (1, H1)

    def __call__(self, hist: np.ndarray, cand: np.ndarray, batch: Batch, user: torch.Tensor | None) -> torch.Tensor:
        """(n,) MSD's logits for one request.

        hist (L, W): the rows of the history's entries (L >= 0, no padding), cand (n, W): the candidates' rows (the
        caller gathers both at once); batch: the request, every row sharing one history; user (Dk,): the user's
        scaled vector when the user level reads a table."""
        fields = self.item_fields(cand, hist)
        if not self.user_level:
            return self.model.backbone(batch, torch.from_numpy(np.stack(fields, axis=1)))  # (n, X, dim) -> (n,)
        e_u = self.user_field(hist, user)  # (1, dim); fused: (1, H1) the first layer's bias
        if not self.fold:
            fields.append(np.broadcast_to(e_u, fields[0].shape))  # (n, dim)
            return self.model.backbone(batch, torch.from_numpy(np.stack(fields, axis=1)))
        extra = fields[0][:, None] if len(fields) == 1 else np.stack(fields, axis=1)  # (n, X - 1, dim)
        inputs = self.model.backbone.inputs(batch, torch.from_numpy(extra))  # (n, width - dim)
        hidden = F.linear(inputs, self.first_weight, torch.from_numpy(e_u[0]))  # (n, H1)
        return self.mlp_rest(hidden).squeeze(1)  # (n,) logits
