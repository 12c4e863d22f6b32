"""MSD's integration module: frequency-guided masking, top-k fusion, missing vectors and the LoRA path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctr.data import batches
from ctr.knowledge import TableVectors, aligned_table, frequency_mask, masking_probs, standardize, topk_sum
from ctr.build import build_model
from ctr.train import optimizer
from ctr.train_config import CTRConfig
from ground.errors import ConfigError
from ground.vectors import mean_pool


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
                       embed_dim=8, hidden=[16], fusion="none", user_level=False)
    model = build_model(config, features, catalogue, data).eval()
    batch = next(batches(train, 64))
    with torch.no_grad():
        fields = model.knowledge(batch)
        batch.history = torch.zeros_like(batch.history)
        assert fields.shape == (64, 1, 8) and torch.equal(fields, model.knowledge(batch))


@pytest.mark.parametrize("fusion, n_fields", [("concat", 2), ("gate", 1), ("add", 1)])
def test_every_fusion_keeps_the_targets_own_vector_reachable(tensors, knowledge_dir, fusion, n_fields):
    """concat: e'_t is a field of its own, the top-k sum beside it; gate/add: e'_t plus (gated) sum."""
    data, features, catalogue, train = tensors
    config = CTRConfig(data=str(data.folder), output="x", model="msd", knowledge=str(knowledge_dir), embed_dim=8,
                       hidden=[16], attention_hidden=[8], fusion=fusion, user_level=False)
    torch.manual_seed(0)
    model = build_model(config, features, catalogue, data).eval()
    batch = next(batches(train, 64))
    with torch.no_grad():
        fields = model.knowledge(batch)
        e_t = model.item_adaptor(model.vectors.items(batch.item))
        alone = fields.clone()
        batch.history = torch.zeros_like(batch.history)  # no history: the sum is zero
        empty = model.knowledge(batch)
    assert fields.shape == (64, n_fields, 8)
    assert torch.allclose(empty[:, 0], e_t, atol=1e-6)  # without neighbours the item field is e'_t itself
    if fusion == "concat":
        assert torch.allclose(alone[:, 0], e_t, atol=1e-6)  # ... and with them too: the sum is a field of its own
        assert torch.equal(empty[:, 1], torch.zeros_like(empty[:, 1]))


def test_msd_gradients_are_the_same_on_two_threads_every_time(tensors, knowledge_dir):
    """A batch's repeated items must not make training thread-order dependent: indexing's backward
    (index_put_ with accumulate) summed their gradients in a different order on each call on 2 threads."""
    from ctr.data import batch_of

    data, features, catalogue, train = tensors
    config = CTRConfig(data=str(data.folder), output="x", model="msd", knowledge=str(knowledge_dir), embed_dim=8,
                       hidden=[16], attention_hidden=[8], adaptor_hidden=32, user_level=True)
    torch.manual_seed(0)
    model = build_model(config, features, catalogue, data).train()
    batch = batch_of(train, torch.randint(0, len(train), (4096,), generator=torch.Generator().manual_seed(0)))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(4):
            model.zero_grad()
            torch.manual_seed(1)  # the same frequency mask each time
            model(batch).sum().backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0][n], g[n]) for g in grads[1:] for n in grads[0])


def test_masking_by_rare_and_uniform():
    counts = torch.tensor([0.0, 1000.0, 10.0])
    rare, uniform = masking_probs(counts, 0.4, "rare"), masking_probs(counts, 0.4, "uniform")
    assert rare[0] == 0 and torch.isclose(rare[1], torch.tensor(0.0)) and rare[2] > rare[1]
    assert torch.allclose(uniform[1:], torch.tensor([0.4, 0.4])) and uniform[0] == 0


def test_user_vector_from_the_history_is_the_mean_of_its_known_items(tensors, knowledge_dir):
    data, features, catalogue, train = tensors
    config = CTRConfig(data=str(data.folder), output="x", model="msd", knowledge=str(knowledge_dir), embed_dim=8,
                       hidden=[16], attention_hidden=[8])
    model = build_model(config, features, catalogue, data).eval()
    batch = next(batches(train, 64))
    unique, inverse = torch.unique(torch.cat([batch.item.unsqueeze(1), batch.history], dim=1), return_inverse=True)
    users = model.user_vectors(model.vectors.items(unique), inverse, batch)
    row = int(torch.nonzero(batch.mask.sum(1) > 1)[0])
    known = [k for k in batch.history[row].tolist() if k > 0 and model.vectors.items(torch.tensor([k])).abs().sum() > 0]
    assert torch.allclose(users[row], model.vectors.items(torch.tensor(known)).mean(0), atol=1e-6)
    assert model.vectors.user_vectors.abs().sum() == 0  # the user table is not even read


def test_z_score_statistics_come_from_the_train_items_only(tensors, knowledge_dir):
    """An item outside train (here: made huge) is scaled like every other, but never moves the mean and std."""
    data, _, catalogue, _ = tensors
    vectors = aligned_table(knowledge_dir / "item_embeddings.parquet", data.item_ids)[0]
    present = vectors.abs().sum(1) > 0
    fit = catalogue.item_counts > 0
    cold = int(torch.nonzero(present)[0])
    fit[cold] = False  # pretend the first item was never a train target
    vectors[cold] = 1e6
    scaled = standardize(vectors, present, fit)
    assert torch.allclose(scaled[present & fit].mean(0), torch.zeros(vectors.shape[1]), atol=1e-4)
    assert torch.allclose(scaled[present & fit].std(0), torch.ones(vectors.shape[1]), atol=1e-4)
    assert scaled[cold].abs().min() > 1e3  # the cold item is scaled, not scaled *by*
    table = TableVectors(knowledge_dir, data, fit_items=catalogue.item_counts > 0).item_vectors
    train = present & (catalogue.item_counts > 0)
    assert torch.allclose(table[train].mean(0), torch.zeros(vectors.shape[1]), atol=1e-4)


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


def test_lora_on_the_top_layers_runs_only_those_per_step_with_the_same_vectors(tensors, tiny_student):
    """--lora-layers 1: adapters in the last layer only; the layer below runs once per text and is kept, and the
    vectors equal the whole stack's (adapters made non-zero so that the check sees them), in train and eval."""
    data, features, catalogue, train = tensors
    config = CTRConfig(data=str(data.folder), output="x", model="msd", lora=True, student=str(tiny_student),
                       embed_dim=8, hidden=[16], attention_hidden=[8], lora_r=4, lora_alpha=8,
                       lora_learning_rate=1e-2, student_max_length=16, lora_layers=1)
    torch.manual_seed(0)
    model = build_model(config, features, catalogue, data)
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert lora and all(".layers.1." in n for n in lora)  # the tiny student has 2 layers
    with torch.no_grad():
        for p in lora.values():
            p.normal_(0, 0.5)
    vectors, batch = model.vectors, next(batches(train, 16))
    keys = torch.unique(torch.cat([batch.item, batch.history.flatten()]))
    keys = keys[keys > 0]
    model.train()
    upper = vectors.items(keys)
    enc = vectors.tokens([vectors.texts["items"][k] for k in keys.tolist()])
    expected = mean_pool(vectors.body(**enc).last_hidden_state, enc["attention_mask"])
    assert torch.allclose(upper, expected, atol=1e-5)
    assert set(vectors.lower["items"]) == set(keys.tolist())
    model.eval()
    assert torch.allclose(vectors.items(keys), expected, atol=1e-5)
    model.train()
    opt = optimizer(model, config)
    before = {n: p.detach().clone() for n, p in lora.items()}
    loss = nn.BCEWithLogitsLoss()(model(batch), batch.label)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(not torch.equal(p, before[n]) for n, p in lora.items())
    assert not any(n.startswith("vectors.upper") for n in model.state_dict())  # the body's weights, saved once


def test_lora_layers_needs_lora_and_fits_the_student(tensors, tiny_student):
    data, features, catalogue, _ = tensors
    with pytest.raises(ConfigError, match="lora_layers needs --lora"):
        CTRConfig(data=str(data.folder), output="x", model="msd", knowledge="k", lora_layers=2)
    config = CTRConfig(data=str(data.folder), output="x", model="msd", lora=True, student=str(tiny_student),
                       lora_layers=3)
    with pytest.raises(ConfigError, match=r"lora_layers must be 1\.\.2"):
        build_model(config, features, catalogue, data)
