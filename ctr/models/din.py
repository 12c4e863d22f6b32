"""DIN (Zhou et al., 2018): the behaviour history pooled by attention to the target item, then an MLP."""

from __future__ import annotations

import torch
from torch import nn

from ctr.data import Batch
from ctr.models.layers import FieldEmbedding, TargetAttention, mlp


class DIN(nn.Module):
    """DIN over user fields, the target item and its attention-pooled history (items as item_id + item fields).

    Args:
        user_sizes: table sizes of user_id and the user fields.
        item_sizes: table sizes of item_id and the item fields; shared by target and history items.
        item_table: (K + 1, Fi) item key -> item field ids (`Catalogue.item_table`).
        dim: embedding width per field.
        hidden: MLP hidden sizes (DIN: 200, 80).
        attention_hidden: attention MLP hidden sizes (DIN: 80, 40).
        dropout: MLP dropout.
        n_extra: extra (B, X, dim) dense fields the caller passes to forward (MSD's knowledge vectors),
            concatenated to the MLP input.
    """

    def __init__(self, *, user_sizes: list[int], item_sizes: list[int], item_table: torch.Tensor, dim: int,
                 hidden: list[int], attention_hidden: list[int], dropout: float = 0.0, n_extra: int = 0):
        super().__init__()
        self.register_buffer("item_table", item_table, persistent=False)
        self.embed_user = FieldEmbedding(user_sizes, dim)
        self.embed_item = FieldEmbedding(item_sizes, dim)
        item_dim = len(item_sizes) * dim
        self.attention = TargetAttention(item_dim, attention_hidden)
        width = len(user_sizes) * dim + 2 * item_dim + n_extra * dim
        self.dnn = mlp([width, *hidden, 1], dropout, last_activation=False)

    def forward(self, batch: Batch, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.dnn(self.inputs(batch, extra)).squeeze(1)  # (B,) logits

    def inputs(self, batch: Batch, extra: torch.Tensor | None = None) -> torch.Tensor:
        """(B, width) the MLP's input: user fields, target, attention-pooled history, then the extra fields."""
        user = self.embed_user(batch.user).flatten(1)  # (B, Fu * D)
        target = self.embed_item(self.item_table[batch.item]).flatten(1)  # (B, Fi * D)
        history = self.embed_item(self.item_table[batch.history]).flatten(2)  # (B, L, Fi * D)
        interest = self.attention(target, history, batch.mask)  # (B, Fi * D)
        parts = [user, target, interest] + ([extra.flatten(1)] if extra is not None else [])
        return torch.cat(parts, dim=1)  # (B, width)
