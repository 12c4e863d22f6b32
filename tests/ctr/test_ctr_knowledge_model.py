"""MSD's integration module: frequency-guided masking, top-k fusion, missing vectors and the LoRA path."""

from __future__ import annotations

import torch
from torch import nn

from ctr.data import batches
from ctr.knowledge import TableVectors, frequency_mask, masking_probs, standardize, topk_sum
from ctr.build import build_model
from ctr.train import optimizer
from ctr.train_config import CTRConfig


def test_masking_probability_grows_with_frequency_and_spares_padding():
    probs = masking_probs(torch.tensor([0.0, 1000.0, 10.0, 0.0]), rate=0.4)
    assert probs[0] == 0  # padding
    assert torch.isclose(probs[1], torch.tensor(0.4))  # the most frequent item gets the full rate
    assert 0 < probs[2] < probs[1]
    assert probs[3] == 0  # an item never seen in training is never masked


def test_frequency_mask_drops_frequent_items_more_and_never_keeps_padding():
    history = torch.tensor([[1, 2, 0]]).repeat(20000, 1)  # (N, 3): a frequent, a rare item, padding
    probs = torch.tensor([0.0, 0.5, 0.1])
    keep = frequency_mask(history, probs, torch.Generator().manual_seed(0))
    assert not keep[:, 2].any()
    assert abs(1 - keep[:, 0].float().mean() - 0.5) < 0.02
    assert abs(1 - keep[:, 1].float().mean() - 0.1) < 0.02


def test_topk_sum_picks_the_most_similar_kept_items():
    target = torch.tensor([[1.0, 0.0]])  # (1, 2)
    history = torch.tensor([[[2.0, 0.1], [0.0, 1.0], [1.0, 1.0], [5.0, 0.0], [9.0, 0.0]]])  # (1, 5, 2)
    keep = torch.tensor([[True, True, True, True, False]])  # the last, most similar, is masked / padding
    # cosine to (1, 0): 1.0 (pos 3), ~0.999 (pos 0), 0.707 (pos 2), 0 (pos 1)
    assert torch.allclose(topk_sum(target, history, keep, k=2), torch.tensor([[7.0, 0.1]]))
    assert torch.allclose(topk_sum(target, history, keep, k=3), torch.tensor([[8.0, 1.1]]))


def test_topk_sum_with_fewer_kept_items_than_k_sums_only_those():
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    history = torch.tensor([[[3.0, 0.0], [7.0, 7.0]], [[1.0, 1.0], [2.0, 2.0]]])
    keep = torch.tensor([[True, False], [False, False]])
    assert torch.allclose(topk_sum(target, history, keep, k=2), torch.tensor([[3.0, 0.0], [0.0, 0.0]]))


def test_standardize_centres_present_rows_and_keeps_absent_ones_zero():
    vectors = torch.tensor([[0.0, 0.0], [10.0, 1.0], [12.0, 3.0], [0.0, 0.0]])
    out = standardize(vectors, torch.tensor([False, True, True, False]))
    expected = torch.tensor([[0.0, 0.0], [-0.7071, -0.7071], [0.7071, 0.7071], [0.0, 0.0]])
    assert torch.allclose(out, expected, atol=1e-4)


def test_absent_vectors_are_zero_and_counted(tensors, knowledge_dir):
    data = tensors[0]
    vectors = TableVectors(knowledge_dir, data)
    assert vectors.missing == {"items": 1, "users": 0}  # the fixture leaves the last item out
    last = torch.tensor([len(data.item_ids)])
    assert vectors.items(last).abs().sum() == 0 and vectors.items(torch.tensor([1])).abs().sum() > 0


def test_no_item_fusion_ignores_the_history(tensors, knowledge_dir):
    data, features, catalogue, train = tensors
    config = CTRConfig(data=str(data.folder), output="x", model="msd-deepfm", knowledge=str(knowledge_dir),
                       embed_dim=8, hidden=[16], item_fusion=False, user_level=False)
    model = build_model(config, features, catalogue, data).eval()
    batch = next(batches(train, 64))
    with torch.no_grad():
        fields = model.knowledge(batch)
        batch.history = torch.zeros_like(batch.history)
        assert fields.shape == (64, 1, 8) and torch.equal(fields, model.knowledge(batch))


def test_lora_path_trains_the_adapters(tensors, tiny_student):
    data, features, catalogue, train = tensors
    config = CTRConfig(data=str(data.folder), output="x", model="msd", lora=True, student=str(tiny_student),
                       embed_dim=8, hidden=[16], attention_hidden=[8], lora_r=4, lora_alpha=8,
                       lora_learning_rate=1e-2, student_max_length=16)
    torch.manual_seed(0)
    model = build_model(config, features, catalogue, data)
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    base = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("vectors.") and "lora_" not in n}
    assert lora and all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters() if n.startswith("vectors."))
    opt, batch = optimizer(model, config), next(batches(train, 16))
    model.train()
    for _ in range(2):  # B starts at 0, so A gets its first gradient on the second step
        loss = nn.BCEWithLogitsLoss()(model(batch), batch.label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], before) for n, before in lora.items())
    assert all(torch.equal(params[n], before) for n, before in base.items())
