"""DeepFM (Guo et al., 2017): first-order terms + FM pairwise interactions + an MLP, over shared field embeddings."""

from __future__ import annotations

import torch
from torch import nn

from ctr.data import Batch
from ctr.models.layers import FieldEmbedding, fm_interaction, mlp


class DeepFM(nn.Module):
    """DeepFM on the user fields and the target item's fields (no behaviour history, as in the paper).

    Args:
        user_sizes: table sizes of user_id and the user fields.
        item_sizes: table sizes of item_id and the item fields.
        item_table: (K + 1, Fi) item key -> item field ids (`Catalogue.item_table`).
        dim: embedding width.
        hidden: MLP hidden sizes.
        dropout: MLP dropout.
        n_extra: extra (B, X, D) dense fields the caller passes to forward (MSD's knowledge vectors);
            they join the FM interactions and the MLP like any other field.
    """

    def __init__(self, *, user_sizes: list[int], item_sizes: list[int], item_table: torch.Tensor, dim: int,
                 hidden: list[int], dropout: float = 0.0, n_extra: int = 0):
        super().__init__()
        self.register_buffer("item_table", item_table, persistent=False)
        sizes = user_sizes + item_sizes
        self.embed = FieldEmbedding(sizes, dim)
        self.first_order = FieldEmbedding(sizes, 1)
        self.bias = nn.Parameter(torch.zeros(1))
        self.dnn = mlp([(len(sizes) + n_extra) * dim, *hidden, 1], dropout, last_activation=False)

    def forward(self, batch: Batch, extra: torch.Tensor | None = None) -> torch.Tensor:
        ids = torch.cat([batch.user, self.item_table[batch.item]], dim=1)  # (B, F)
        fields = self.embed(ids)  # (B, F, D)
        if extra is not None:
            fields = torch.cat([fields, extra], dim=1)  # (B, F + X, D)
        linear = self.first_order(ids).sum(dim=(1, 2)) + self.bias  # (B,)
        return linear + fm_interaction(fields).squeeze(1) + self.dnn(fields.flatten(1)).squeeze(1)  # (B,) logits
