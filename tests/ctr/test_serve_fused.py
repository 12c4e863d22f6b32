"""MSD's request part fused into the DIN backbone (`ctr.adapted.RequestPath`, issue 26): the user field folded
into the first MLP layer's bias gives the model's own logits, as the unfused path does, on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ctr.adapted import RequestPath, item_parts
from ctr.data import Batch
from ctr.knowledge import MSD, knowledge_fields
from ctr.models.deepfm import DeepFM
from ctr.models.din import DIN

K, DK, DIM = 30, 12, 8  # catalogue items, raw vector width, embedding width


class Fixed(nn.Module):
    """Stands in for the run's (z-scored) vector tables."""

    def __init__(self, items: torch.Tensor):
        super().__init__()
        self.item_vectors, self.dim = items, items.shape[1]

    def items(self, keys: torch.Tensor) -> torch.Tensor:
        return self.item_vectors[keys]

    def users(self, keys: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*keys.shape, self.dim)


def tiny_msd(fusion: str, user_level: bool, backbone: str = "din") -> tuple[MSD, torch.Tensor]:
    """A random MSD (eval mode) over K items, item 5 without a vector; and the full (K + 1, Fi) ID table."""
    torch.manual_seed(0)
    vectors = torch.randn(K + 1, DK)
    vectors[0], vectors[5] = 0, 0
    keys = torch.arange(K + 1)
    table = torch.stack([keys, torch.where(keys > 0, keys % 4 + 1, 0)], dim=1)  # (K + 1, 2): id, a genre
    sizes = {"user_sizes": [12, 5], "item_sizes": [K + 1, 6], "item_table": table, "dim": DIM, "hidden": [20, 10],
             "n_extra": knowledge_fields(fusion, user_level)}
    net = DIN(**sizes, attention_hidden=[8]) if backbone == "din" else DeepFM(**sizes)
    model = MSD(backbone=net, vectors=Fixed(vectors), item_counts=torch.ones(K + 1), dim=DIM, adaptor_hidden=16,
                top_k=3, mask_rate=0.0, fusion=fusion, user_level=user_level)
    for p in model.parameters():  # biases too: a zero bias would hide a misplaced one
        nn.init.normal_(p, std=0.3)
    return model.eval(), table


def request(history: list[int], candidates: list[int]) -> Batch:
    n = len(candidates)
    return Batch(user=torch.tensor([[3, 2]]).expand(n, -1), user_key=torch.ones(n, dtype=torch.long),
                 item=torch.tensor(candidates), history=torch.tensor([history]).expand(n, -1),
                 label=torch.zeros(n), ts=torch.zeros(n, dtype=torch.long))


HISTORIES = {"plain": [3, 8, 12, 20, 7, 1], "duplicates and an item without a vector": [4, 9, 9, 5, 17, 4, 2],
             "shorter than k": [11, 6], "empty": []}


def path_logits(path: RequestPath, rows: np.ndarray, history: list[int], candidates: list[int]) -> np.ndarray:
    """The request path over catalogue keys: its entries' rows (the history's without padding), the batch."""
    return path(rows[history], rows[candidates], request(history or [0], candidates), None).numpy()


@pytest.mark.parametrize("fusion", ["gate", "concat", "add", "none"])
@pytest.mark.parametrize("history", HISTORIES.values(), ids=HISTORIES.keys())
def test_fused_and_unfused_paths_give_the_models_logits(fusion, history):
    model, _ = tiny_msd(fusion, user_level=True)
    rows = item_parts(model, model.vectors.item_vectors).detach().numpy()  # (K + 1, W): row k = item k
    candidates = [2, 5, 13, 21, 30, 9, 1]
    with torch.inference_mode():
        expected = model(request(history or [0], candidates)).numpy()  # an empty history: one padding entry
        path = RequestPath(model)
        assert path.fold  # a DIN backbone with a user level: the user field goes into the first layer's bias
        fused = path_logits(path, rows, history, candidates)
        path.fold = False
        unfused = path_logits(path, rows, history, candidates)
    assert np.abs(fused - expected).max() <= 1e-5 and np.abs(unfused - expected).max() <= 1e-5
    assert np.std(expected) > 1e-3


def test_rows_by_catalogue_key_score_a_request_in_local_keys():
    """Rows gathered by catalogue key beside a batch in request-local keys 1..m (its ID table by local key), as
    `Served` gives them, score as the catalogue keys themselves."""
    model, table = tiny_msd("gate", user_level=True)
    rows = item_parts(model, model.vectors.item_vectors).detach().numpy()
    history, candidates = [17, 4, 9, 25], [9, 30, 2, 5]
    catalogue = np.array([17, 4, 9, 25, 30, 2, 5])  # local key k -> catalogue key catalogue[k - 1]
    local = {c: k for k, c in enumerate(catalogue, start=1)}
    with torch.inference_mode():
        expected = model(request(history, candidates)).numpy()
        model.backbone.item_table = table[np.concatenate([[0], catalogue])]  # the request's ID table by local key
        batch = request([local[h] for h in history], [local[c] for c in candidates])
        got = RequestPath(model)(rows[history], rows[candidates], batch, None).numpy()
    assert np.abs(got - expected).max() <= 1e-5


@pytest.mark.parametrize("backbone,user_level", [("deepfm", True), ("din", False)])
def test_no_fold_without_a_din_backbone_or_a_user_level(backbone, user_level):
    model, _ = tiny_msd("gate", user_level=user_level, backbone=backbone)
    rows = item_parts(model, model.vectors.item_vectors).detach().numpy()
    history, candidates = [3, 8, 12, 20], [2, 5, 13]
    with torch.inference_mode():
        path = RequestPath(model)
        assert not path.fold
        assert np.abs(path_logits(path, rows, history, candidates) - model(request(history, candidates)).numpy()).max() <= 1e-5
