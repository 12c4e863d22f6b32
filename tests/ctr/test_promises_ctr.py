"""Promises of the CTR side that a plausible one-line bug breaks silently (issue 23, section 2).

Each test here was checked by planting such a bug (scripts/check_planted_bugs.py, entries "23."):
negatives drawn by popularity within their month, GAUC grouping interleaved users, the best epoch and
early stopping chosen on validation AUC, cosine (not dot-product) top-k fusion, train-only item
frequencies and vocabularies, and serving keeping the most recent history.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ctr.data import build_catalogue, build_split, item_keys, load_prepared
from ctr.features import build_features
from ctr.knowledge import masking_probs, topk_sum
from ctr.metrics import ctr_metrics, gauc
from ctr.train_config import CTRConfig
from ctr_samples import write_prepared


# --- 1. Online Retail negatives: popularity within the basket's month -----------------------------------

def month_frames(counts: dict[str, dict[str, int]], baskets_per_month: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(positives, sold): each month `baskets_per_month` one-line baskets buying item "A"; `counts` says in how many
    baskets of that month each other item was sold (one row per basket and item, as prepare_retail's `sold`)."""
    pos, sold, invoice = [], [], 0
    for month, items in counts.items():
        for b in range(baskets_per_month):
            invoice += 1
            pos.append({"month": month, "InvoiceNo": f"{invoice:06d}", "StockCode": "A", "user_id": f"u{b % 7}",
                        "ts": invoice, "n": 1})
        sold += [{"month": month, "StockCode": "A", "InvoiceNo": p["InvoiceNo"]} for p in pos if p["month"] == month]
        for item, k in items.items():
            sold += [{"month": month, "StockCode": item, "InvoiceNo": f"x{month}{item}{j}"} for j in range(k)]
    return pd.DataFrame(pos), pd.DataFrame(sold)


def test_retail_negatives_follow_the_months_basket_counts_not_a_uniform_draw():
    from ctr.prepare_retail import sample_negatives

    # B is in 9 times as many baskets as C in January, and C in 9 times as many as B in February.
    pos, sold = month_frames({"2011-01": {"B": 90, "C": 10}, "2011-02": {"B": 10, "C": 90}}, baskets_per_month=3000)
    neg = sample_negatives(pos, sold, negatives=1, rng=np.random.default_rng(0), log=lambda m: None)
    assert len(neg) == len(pos) and "A" not in set(neg["StockCode"])  # one per line, never the basket's own item
    month = neg["InvoiceNo"].map(pos.set_index("InvoiceNo")["month"])
    share_b = neg["StockCode"].eq("B").groupby(month).mean()
    # proportional: 0.9 and 0.1 (+- 0.02 is > 3.5 standard errors); uniform gives 0.5, all months pooled 0.5 too
    assert share_b["2011-01"] == pytest.approx(0.9, abs=0.02)
    assert share_b["2011-02"] == pytest.approx(0.1, abs=0.02)


def test_month_negatives_draw_without_replacement_in_proportion_to_weight():
    from ctr.prepare_retail import month_negatives

    # 4000 baskets, each bought item 0 and wants 2 negatives from items 1..3 weighted 1 : 2 : 7.
    b = 4000
    rows, drawn = month_negatives(np.arange(b), np.zeros(b, int), np.full(b, 2), np.array([50.0, 1.0, 2.0, 7.0]),
                                  np.random.default_rng(1))
    assert len(rows) == 2 * b and 0 not in set(drawn.tolist())
    pairs = pd.DataFrame({"b": rows, "item": drawn})
    assert not pairs.duplicated().any()  # without replacement within a basket
    # inclusion of the lightest item when 2 of 3 are drawn by weight 1:2:7 is about 0.36 (uniform: 0.67)
    share = pairs["item"].value_counts(normalize=True).reindex([1, 2, 3]).to_numpy() * 2
    assert share[0] == pytest.approx(0.36, abs=0.04) and share[0] < share[1] < share[2]


# --- 2. GAUC groups each user's rows wherever they are ---------------------------------------------------

def per_user_gauc(labels, scores, users) -> float:
    from sklearn.metrics import roc_auc_score

    total = weight = 0
    for u in dict.fromkeys(users):
        m = users == u
        if labels[m].min() != labels[m].max():
            total += roc_auc_score(labels[m], scores[m]) * m.sum()
            weight += m.sum()
    return total / weight


def test_gauc_groups_users_interleaved_in_time():
    rng = np.random.default_rng(0)
    users = np.array(["a", "b", "c"] * 40)  # every split interleaves users in time
    labels = rng.integers(0, 2, len(users))
    scores = rng.random(len(users)) + 0.4 * labels
    value, scored, skipped = gauc(labels, scores, users)
    assert (scored, skipped) == (3, 0)
    assert value == pytest.approx(per_user_gauc(labels, scores, users), abs=1e-12)
    shuffled = rng.permutation(len(users))  # the order of the rows never matters
    assert gauc(labels[shuffled], scores[shuffled], users[shuffled])[0] == pytest.approx(value, abs=1e-12)
    assert ctr_metrics(labels, scores, users)["gauc"] == pytest.approx(value, abs=1e-12)


# --- 3. The best epoch and early stopping: validation AUC ------------------------------------------------

class RowsOnly:
    """Stands in for a Split in fit(): only its length is read once train_epoch and score are replaced."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def scripted_fit(monkeypatch, aucs: list[float], epochs: int, patience: int):
    """ctr.train.fit with one epoch = the weight set to the epoch number, and scripted validation AUCs."""
    from ctr import train as T

    model, script, done = nn.Linear(1, 1), iter(aucs), []

    def one_epoch(loss_fn, split, opt, config, generator):
        done.append(len(done) + 1)
        with torch.no_grad():
            model.weight.fill_(float(len(done)))
        return 0.5

    monkeypatch.setattr(T, "train_epoch", one_epoch)
    monkeypatch.setattr(T, "score", lambda m, split, batch_size: {"auc": next(script)})
    config = CTRConfig(data="d", output="o", model="din", epochs=epochs, patience=patience)
    return T.fit(model, RowsOnly(10), RowsOnly(5), config)


def test_fit_keeps_the_first_best_validation_epoch_and_stops_after_patience(monkeypatch):
    # best 0.70 at epoch 2 (epoch 4 only equals it); epochs 3, 4, 5 bring no improvement: stop after epoch 5
    result = scripted_fit(monkeypatch, [0.60, 0.70, 0.65, 0.70, 0.68, 0.99, 0.99], epochs=7, patience=3)
    assert result.best_epoch == 2
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert result.best_state["weight"].item() == 2.0  # the weights of the best epoch, not the last
    assert [h["val_auc"] for h in result.history] == [0.6, 0.7, 0.65, 0.7, 0.68]


def test_fit_runs_every_epoch_while_validation_improves(monkeypatch):
    result = scripted_fit(monkeypatch, [0.55, 0.60, 0.62, 0.61], epochs=4, patience=1)
    assert result.best_epoch == 3 and len(result.history) == 4 and result.best_state["weight"].item() == 3.0


def test_train_early_stops_on_the_validation_split_and_reports_it(prepared, tmp_path, monkeypatch):
    """The split fit() validates on is the val split, and the val_auc of the best epoch is the returned model's.

    The spy moves the weights away after fit (as epochs after the best one do): what train() scores and saves
    must still be the best epoch's weights.
    """
    from ctr import train as T

    seen = {}
    real_fit = T.fit

    def spy(model, train, val, config):
        seen["val"] = val
        result = real_fit(model, train, val, config)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        return result

    monkeypatch.setattr(T, "fit", spy)
    out = tmp_path / "run"
    metrics = T.train(CTRConfig(data=str(prepared), output=str(out), model="din", epochs=4, patience=4,
                                batch_size=64, learning_rate=0.02, embed_dim=8, hidden=[16], attention_hidden=[8]))
    assert T.evaluate_run(out, split="val")["auc"] == pytest.approx(metrics["val"]["auc"], abs=1e-12)
    data = load_prepared(prepared)
    val = data.split("val")
    assert seen["val"].label.tolist() == val["label"].astype(float).tolist()
    assert list(seen["val"].user_ids) == val["user_id"].astype(str).tolist()
    best = metrics["history"][metrics["best_epoch"] - 1]
    assert best["val_auc"] == round(metrics["val"]["auc"], 5)
    assert round(metrics["test"]["auc"], 5) != round(metrics["val"]["auc"], 5)  # else the check above could not tell
    assert metrics["best_epoch"] == 1 + int(np.argmax([h["val_auc"] for h in metrics["history"]]))


def test_bench_elec_validates_on_the_validation_split(prepared):
    """bench/bench_elec.py trains with its own copy of `ctr train`'s steps: the same promise holds there."""
    import importlib.util

    from ctr.runs import load_data

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_elec.py"
    spec = importlib.util.spec_from_file_location("bench_elec_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config = CTRConfig(data=str(prepared), output="unused", model="din", epochs=3, patience=3, batch_size=64,
                       learning_rate=0.02, embed_dim=8, hidden=[16], attention_hidden=[8])
    loaded = load_data(config)
    data, features, _, max_history = loaded
    splits = {n: build_split(data, n, features, max_history) for n in ("train", "val", "test")}
    metrics = bench.train_in_process(config, loaded, splits)
    assert metrics["history"][metrics["best_epoch"] - 1]["val_auc"] == round(metrics["val"]["auc"], 5)
    assert round(metrics["test"]["auc"], 5) != round(metrics["val"]["auc"], 5)


# --- 4. MSD fusion: top-k by cosine similarity ----------------------------------------------------------

def test_topk_fusion_ranks_by_cosine_not_by_length():
    target = torch.tensor([[1.0, 0.0]])
    # a long vector at 45 degrees (dot 10, cosine 0.71) and a short one along the target (dot 1, cosine 0.999)
    history = torch.tensor([[[10.0, 10.0], [1.0, 0.05], [0.0, 3.0]]])
    keep = torch.ones(1, 3, dtype=torch.bool)
    assert torch.allclose(topk_sum(target, history, keep, k=1), torch.tensor([[1.0, 0.05]]))
    assert torch.allclose(topk_sum(target, history, keep, k=2), torch.tensor([[11.0, 10.05]]))
    # a short target changes nothing: cosine does not see lengths
    assert torch.allclose(topk_sum(0.01 * target, history, keep, k=1), torch.tensor([[1.0, 0.05]]))


# --- 5. Frequencies and vocabularies from the train split only ------------------------------------------

@pytest.fixture(scope="module")
def cold_prepared(tmp_path_factory) -> Path:
    """More items than train rows can show: many items occur only in validation or test."""
    folder = write_prepared(tmp_path_factory.mktemp("cold-prepared"), n_users=12, n_items=120, per_user=12)
    samples = pd.read_parquet(folder / "samples.parquet")
    train_items = set(samples.loc[samples["split"] == "train", "item_id"])
    assert set(samples["item_id"]) - train_items, "the fixture needs items unseen in train"
    return folder


def test_masking_frequencies_count_train_targets_only(cold_prepared):
    data = load_prepared(cold_prepared)
    features = build_features(data.split("train"), data.card)
    counts = build_catalogue(data, features).item_counts
    train_keys = item_keys(data.split("train")["item_id"].to_numpy(), data.item_ids, "t")
    assert counts.tolist() == np.bincount(train_keys, minlength=len(data.item_ids) + 1).astype(float).tolist()
    unseen = sorted(set(data.samples["item_id"]) - set(data.split("train")["item_id"]))
    keys = [data.item_ids.index(i) + 1 for i in unseen]
    assert (masking_probs(counts, 0.3)[keys] == 0).all()  # an item training never showed is never masked


def test_msd_masks_by_the_catalogues_train_counts(tensors, knowledge_dir):
    from ctr.build import build_model

    data, features, catalogue, _ = tensors
    config = CTRConfig(data=str(data.folder), output="x", model="msd", knowledge=str(knowledge_dir), embed_dim=8,
                       hidden=[16], attention_hidden=[8], mask_rate=0.3)
    model = build_model(config, features, catalogue, data)
    train_keys = item_keys(data.split("train")["item_id"].to_numpy(), data.item_ids, "t")
    expected = masking_probs(torch.from_numpy(np.bincount(train_keys, minlength=len(data.item_ids) + 1)), 0.3)
    assert torch.allclose(model.mask_probs, expected)


def test_training_vocabularies_come_from_the_train_rows(cold_prepared):
    from ctr.runs import load_data

    data, features, _, _ = load_data(CTRConfig(data=str(cold_prepared), output="x", model="din"))
    train = data.split("train")
    for field in features.user_fields + features.item_fields:
        assert set(features.vocabs[field]) == set(train[field].astype(str)), field


# --- 6. Serving keeps the most recent max_history items of a request ------------------------------------

@pytest.fixture(scope="module")
def din_run(tmp_path_factory, prepared) -> Path:
    from ctr.train import train

    folder = tmp_path_factory.mktemp("din-run")
    train(CTRConfig(data=str(prepared), output=str(folder), model="din", epochs=2, batch_size=64,
                    learning_rate=0.01, embed_dim=8, hidden=[16], attention_hidden=[8]))
    return folder


def test_serving_keeps_the_most_recent_history_items(din_run, prepared):
    from ctr.scoring import ServeConfig, Served

    served = Served(ServeConfig(model=str(din_run)))
    items = load_prepared(prepared).item_ids
    n = served.max_history
    history, candidates = items[: n + 4], items[n + 4 : n + 10]  # oldest first, 4 more than the model reads
    long = served.score("u3", history, candidates)["scores"]
    recent = served.score("u3", history[-n:], candidates)["scores"]
    oldest = served.score("u3", history[:n], candidates)["scores"]
    np.testing.assert_allclose(long, recent, rtol=0, atol=1e-7)
    assert np.abs(np.array(recent) - np.array(oldest)).max() > 1e-5  # the history matters to this model


def test_serving_scores_a_row_as_evaluation_does_even_with_a_longer_history(din_run, prepared):
    """A test row sent with its full history (longer than max_history) scores as `ctr eval` scores it."""
    from ctr.scoring import ServeConfig, Served
    from ctr.runs import load_run
    from ctr.train import predict

    run = load_run(din_run)
    served = Served(ServeConfig(model=str(din_run)))
    test = run.data.split("test")
    row = next(r for r in test.itertuples() if len(r.history) == run.max_history)
    extra = [i for i in run.data.item_ids if i not in set(row.history)][:3]
    split = build_split(run.data, "test", run.features, run.max_history)
    expected = predict(run.model, split, 4096)[test.index.get_loc(row.Index)]
    got = served.score(row.user_id, extra + [str(i) for i in row.history], [row.item_id])["scores"][0]
    assert got == pytest.approx(float(expected), abs=1e-6)


def test_serving_user_fields_come_from_the_users_latest_sample(prepared):
    from ctr.scoring import user_field_rows

    data = load_prepared(prepared)
    samples = data.samples.copy()
    last = samples.index[samples["user_id"] == "u1"][-1]
    samples.loc[last, "gender"] = "X"  # the user's field changed in their latest sample
    data.samples = samples
    features = build_features(samples, data.card)
    rows = user_field_rows(data, features)
    assert rows["u1"][features.user_fields.index("gender")] == features.vocabs["gender"]["X"]


# --- siblings: `ctr warm` stores the top items by train exposures ---------------------------------------

class MemoryRedis:
    """Stands in for ctr.cache.RedisStore: a dict."""

    def __init__(self, url: str, timeout_s: float = 0.25, retry_s: float = 1.0):
        self.data: dict[str, bytes] = {}
        self.up = True
        MemoryRedis.last = self

    def ping(self) -> bool:
        return True

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self.data.get(k) for k in keys]

    def set_many(self, items: dict[str, bytes]) -> bool:
        self.data.update(items)
        return True


def test_warm_stores_the_items_with_the_most_train_exposures(tmp_path, monkeypatch):
    import json

    from ctr import encoders, scoring
    from ctr.cache import VectorCache
    from ground.vectors import ITEM_TABLE, write_table
    from kgen.inputs import item_input

    exposures = {"i0": 5, "i1": 50, "i2": 20, "i3": 0, "i4": 30}
    items = [{"item_id": i, "name": f"Item {i}", "stats": {"exposures": n, "clicks": 0}} for i, n in exposures.items()]
    data, knowledge, run = tmp_path / "data", tmp_path / "knowledge", tmp_path / "run"
    for folder in (data, knowledge, run):
        folder.mkdir()
    (data / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    write_table(knowledge / ITEM_TABLE, list(exposures), np.eye(5, dtype=np.float32))
    (knowledge / "embed_config.json").write_text(json.dumps({"model": "the-student", "max_length": 32}))
    (run / "ctr_config.json").write_text(json.dumps({"model": "msd", "data": str(data), "knowledge": str(knowledge)}))
    monkeypatch.setattr(scoring, "RedisStore", MemoryRedis)
    monkeypatch.setattr(encoders, "student_version", lambda student, max_length, *readout: "v1")
    # item_path raw: the raw vectors alone (this run folder has no model.pt to pre-compute MSD's item rows with)
    out = scoring.warm(scoring.ServeConfig(model=str(run), redis="redis://memory", codec="float32", item_path="raw"),
                       top=3)
    assert out["computed"] == 3 and not out["student_loaded"]
    cache = VectorCache(version="v1", codec="float32", lru_size=0, redis=None)
    top = [r for r in items if r["item_id"] in ("i1", "i4", "i2")]  # 50, 30, 20 train exposures
    assert set(MemoryRedis.last.data) == {cache.key("i", item_input(r)) for r in top}
