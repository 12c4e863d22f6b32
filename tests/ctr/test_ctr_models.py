"""DeepFM, DIN and MSD: losses fall on a tiny batch; padding never changes an output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctr.data import Batch, batches
from ctr.build import build_model
from ctr.train_config import CTRConfig


def make_model(name: str, tensors, knowledge_dir=None, **overrides) -> nn.Module:
    data, features, catalogue, _ = tensors
    config = CTRConfig(data=str(data.folder), output="unused", model=name, embed_dim=8, hidden=[32, 16],
                       attention_hidden=[16, 8], knowledge=str(knowledge_dir) if knowledge_dir else None, **overrides)
    torch.manual_seed(0)
    return build_model(config, features, catalogue, data)


def first_batch(tensors, size: int = 128) -> Batch:
    return next(batches(tensors[3], size))


@pytest.mark.parametrize("name", ["deepfm", "din", "msd", "msd-deepfm"])
def test_loss_falls_over_a_few_steps(name, tensors, knowledge_dir):
    model = make_model(name, tensors, knowledge_dir)
    batch = first_batch(tensors)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    losses = []
    for _ in range(20):
        loss = loss_fn(model(batch), batch.label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def pad_more(batch: Batch, extra: int) -> Batch:
    zeros = torch.zeros(batch.history.shape[0], extra, dtype=batch.history.dtype)
    return Batch(user=batch.user, user_key=batch.user_key, item=batch.item,
                 history=torch.cat([batch.history, zeros], dim=1), label=batch.label, ts=batch.ts)


@pytest.mark.parametrize("name", ["din", "msd", "msd-deepfm"])
def test_padding_does_not_change_the_output(name, tensors, knowledge_dir):
    model = make_model(name, tensors, knowledge_dir).eval()
    batch = first_batch(tensors)
    assert (batch.history == 0).any() and (batch.history > 0).any()  # the batch has real and padded positions
    with torch.no_grad():
        assert torch.allclose(model(batch), model(pad_more(batch, 5)), atol=1e-6)


def test_din_output_depends_on_the_history(tensors):
    """The attention is not a no-op: dropping the history changes DIN's scores."""
    model = make_model("din", tensors).eval()
    for p in model.attention.parameters():  # untrained weights near 0 would hide the effect
        torch.nn.init.normal_(p, std=0.5)
    batch = first_batch(tensors)
    empty = Batch(user=batch.user, user_key=batch.user_key, item=batch.item,
                  history=torch.zeros_like(batch.history), label=batch.label, ts=batch.ts)
    with torch.no_grad():
        assert not torch.allclose(model(batch), model(empty))


def test_forward_returns_logits_not_probabilities(tensors):
    model = make_model("deepfm", tensors)
    with torch.no_grad():
        model.bias.fill_(5.0)  # a large bias must show up unsquashed
        assert (model(first_batch(tensors)) > 1).all()
