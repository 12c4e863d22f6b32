"""The layers DeepFM, DIN and MSD share: embeddings of categorical fields, an MLP, FM and target attention."""

from __future__ import annotations

import torch
from torch import nn


def mlp(sizes: list[int], dropout: float = 0.0, last_activation: bool = True) -> nn.Sequential:
    """Linear layers of the given sizes (input first) with ReLU (and dropout) between them."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or last_activation:
            layers += [nn.ReLU(), nn.Dropout(dropout)] if dropout else [nn.ReLU()]
    return nn.Sequential(*layers)


class FieldEmbedding(nn.Module):
    """One embedding table per categorical field; id 0 (padding) embeds to zeros.

    Args:
        sizes: table size of each field (vocabulary + padding + unknown).
        dim: embedding width.
    """

    def __init__(self, sizes: list[int], dim: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, dim, padding_idx=0) for n in sizes)
        for table in self.tables:
            nn.init.normal_(table.weight, std=1e-2)  # FuxiCTR's default; padding row stays zero below
            with torch.no_grad():
                table.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids (..., F) -> (..., F, D)
        return torch.stack([table(ids[..., f]) for f, table in enumerate(self.tables)], dim=-2)


def fm_interaction(fields: torch.Tensor) -> torch.Tensor:
    """Second-order FM term, (B, F, D) -> (B, 1): 0.5 * sum((sum_f v_f)^2 - sum_f v_f^2)."""
    square_of_sum = fields.sum(dim=1).pow(2)  # (B, D)
    sum_of_square = fields.pow(2).sum(dim=1)  # (B, D)
    return 0.5 * (square_of_sum - sum_of_square).sum(dim=1, keepdim=True)


class TargetAttention(nn.Module):
    """DIN's local activation unit: a history pooled with weights from an MLP of (query, key) pairs.

    As in FuxiCTR, the weights are not softmax-normalised (DIN keeps the intensity
    of interest) and padded positions get weight 0, so padding cannot change the output.

    Args:
        dim: width of a query / history vector.
        hidden: hidden sizes of the attention MLP (DIN: 80, 40).
    """

    def __init__(self, dim: int, hidden: list[int]):
        super().__init__()
        self.score = nn.Sequential(mlp([4 * dim, *hidden]), nn.Linear(hidden[-1], 1))

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # query (B, D), keys (B, L, D), mask (B, L) bool -> (B, D)
        q = query.unsqueeze(1).expand_as(keys)  # (B, L, D)
        weights = self.score(torch.cat([q, keys, q - keys, q * keys], dim=-1)).squeeze(-1)  # (B, L)
        weights = weights * mask.to(weights.dtype)  # padded positions contribute nothing
        return (weights.unsqueeze(-1) * keys).sum(dim=1)  # (B, D)
