import hashlib

import numpy as np
import pytest

from eval.calibrate import calibrate_tau, pick_tau, read_pairs
from eval.embedder import Embedder, EmbedderError, check_cjk, is_default_english
from eval.f1_report import evaluate_f1, format_report
from eval.keyphrase_f1 import (
    aggregate,
    item_scores,
    match_many_to_one,
    match_one_to_one,
    prf,
    similarity_matrix,
)
from ground import records as R


class FakeEncoder:
    """Deterministic phrase vectors: given ones, else a hash-seeded random vector (near-orthogonal)."""

    def __init__(self, vectors: dict[str, list[float]] | None = None, dim: int = 64):
        self.vectors = {k: np.asarray(v, dtype=np.float32) for k, v in (vectors or {}).items()}
        self.dim = dim
        self.calls: list[list[str]] = []

    def _vector(self, phrase: str) -> np.ndarray:
        if phrase in self.vectors:
            v = np.zeros(self.dim, dtype=np.float32)
            v[: len(self.vectors[phrase])] = self.vectors[phrase]
            return v
        seed = int(hashlib.md5(phrase.encode()).hexdigest()[:8], 16)
        return np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)

    def encode(self, phrases: list[str]) -> np.ndarray:
        self.calls.append(list(phrases))
        return np.stack([self._vector(p) for p in phrases])


def pred(id_, phrases, status="ok", level="item"):
    return {R.ID: id_, R.LEVEL: level, R.INPUT: id_, R.KEY_PHRASES: phrases, R.RAW: "", R.STATUS: status}


def gold(id_, phrases, level="item", **extra):
    return {R.ID: id_, R.LEVEL: level, R.KEY_PHRASES: phrases, **extra}


def headline(report):
    return report["headline"]["macro"]


def run(preds, golds, encoder=None, **kw):
    return evaluate_f1(preds, golds, encoder or FakeEncoder(), n_boot=kw.pop("n_boot", 50), **kw)


# --- golden cases ------------------------------------------------------------


def test_identical_sets_score_one():
    report = run([pred("a", ["Red Retrospot", "Gift"])], [gold("a", ["Gift", "red retrospot"])])
    assert (headline(report)["precision"], headline(report)["recall"], headline(report)["f1"]) == (1.0, 1.0, 1.0)
    assert report["macro_f1"] == 1.0


def test_disjoint_sets_score_zero():
    report = run([pred("a", ["Doormat", "Tea Towel"])], [gold("a", ["Gift", "Red Retrospot"])])
    assert headline(report)["f1"] == 0.0
    assert report["exact"]["macro"]["f1"] == 0.0


def test_duplicates_after_normalisation_do_not_raise_precision():
    report = run([pred("a", ["Red", "red ", "RED!", "Blue"])], [gold("a", ["red", "green"])])
    assert headline(report)["precision"] == 0.5  # not 3/4
    assert report["per_item"][0]["duplicates_dropped"] == 2


@pytest.mark.parametrize(
    ("pred_phrases", "gold_phrases", "expected"),
    [([], [], 1.0), ([], ["Gift"], 0.0), (["Gift"], [], 0.0)],
)
def test_empty_sets(pred_phrases, gold_phrases, expected):
    report = run([pred("a", pred_phrases)], [gold("a", gold_phrases)])
    assert headline(report)["f1"] == expected
    assert report["headline"]["micro"]["f1"] == expected


def test_prf_convention():
    assert prf(0, 0, 0, 0) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert prf(0, 0, 0, 3) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert prf(0, 0, 2, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert prf(1, 1, 2, 4)["f1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)


def test_threshold_just_below_is_not_matched_and_at_or_above_is():
    assert match_one_to_one(np.array([[0.7999]], dtype=np.float32), 0.8) == []
    assert len(match_one_to_one(np.array([[0.8]], dtype=np.float32), 0.8)) == 1
    assert len(match_one_to_one(np.array([[0.95]], dtype=np.float32), 0.9)) == 1


def test_threshold_through_the_whole_evaluation():
    # cos(a, b) = 0.75: matched at tau 0.6 and 0.7, not at 0.8 or 0.9.
    enc = FakeEncoder({"gift": [1.0, 0.0], "present": [0.75, np.sqrt(1 - 0.75**2)]})
    report = run([pred("a", ["Gift"])], [gold("a", ["Present"])], enc)
    sweep = {t: agg["macro"]["f1"] for t, agg in report["tau_sweep"].items()}
    assert sweep == {"0.60": 1.0, "0.70": 1.0, "0.80": 0.0, "0.90": 0.0}
    assert headline(report)["f1"] == 0.0
    assert run([pred("a", ["Gift"])], [gold("a", ["Present"])], enc, tau=0.7)["macro_f1"] == 1.0


def test_numbers_differ_forces_similarity_zero_and_equal_forms_one():
    same = np.ones((4, 3), dtype=np.float32)  # identical embeddings: cosine 1 everywhere
    sim = similarity_matrix(["1.25l", "gift"], ["1.5l", "1.25l", "present", "gift"], same[:2], same)
    assert sim[0, 0] == 0.0  # 1.25l vs 1.5l
    assert sim[0, 1] == 1.0
    assert sim[1, 2] == pytest.approx(1.0)
    orthogonal = np.eye(2, dtype=np.float32)
    assert similarity_matrix(["gift"], ["gift"], orthogonal[:1], orthogonal[1:])[0, 0] == 1.0


def test_a_number_on_one_side_only_forces_similarity_zero():
    """"1.25l" names a size, "gift" names none: however close their vectors, they are not one phrase."""
    same = np.ones((2, 3), dtype=np.float32)  # identical embeddings: cosine 1
    assert similarity_matrix(["1.25l"], ["gift"], same[:1], same[1:])[0, 0] == 0.0
    assert similarity_matrix(["gift"], ["1.25l"], same[:1], same[1:])[0, 0] == 0.0
    sim = similarity_matrix(["1.25l"], ["gift"], same[:1], same[1:])
    assert item_scores(sim, ["1.25l"], ["gift"], 0.5, "one_to_one")["f1"] == 0.0
    enc = FakeEncoder({"1.25l": [1.0, 0.0], "gift": [1.0, 0.0]})
    assert run([pred("a", ["1.25L"])], [gold("a", ["Gift"])], enc, tau=0.5)["macro_f1"] == 0.0


def test_one_to_one_never_matches_a_gold_twice_but_many_to_one_can():
    sim = np.array([[0.9], [0.95]], dtype=np.float32)  # two predictions, one gold
    pairs = match_one_to_one(sim, 0.8)
    assert pairs == [(1, 0, pytest.approx(0.95))]  # the better one wins
    assert match_many_to_one(sim, 0.8) == (2, 1)
    one = item_scores(sim, ["a", "b"], ["x"], 0.8, "one_to_one")
    many = item_scores(sim, ["a", "b"], ["x"], 0.8, "many_to_one")
    assert (one["precision"], many["precision"]) == (0.5, 1.0)


def test_one_to_one_counts_the_most_pairs_not_the_heaviest():
    # {a-x, b-y} weighs 2.0 with two pairs; {a-y, b-z, c-x} weighs 1.8 with three: F1 counts pairs.
    sim = np.array([[1.0, 0.6, 0.0], [0.0, 1.0, 0.6], [0.6, 0.0, 0.0]], dtype=np.float32)
    assert len(match_one_to_one(sim, 0.6)) == 3


def test_sub_tau_pairs_never_displace_a_valid_pair():
    # On raw similarities a-y (0.79, below tau) + b-x (0.99) outweighs a-x + b-y (0.8 + 0.8) and leaves one match.
    sim = np.array([[0.8, 0.79], [0.99, 0.8]], dtype=np.float32)
    pairs = match_one_to_one(sim, 0.8)
    assert sorted((i, j) for i, j, _ in pairs) == [(0, 0), (1, 1)]


def test_sweep_f1_does_not_rise_with_tau():
    rng = np.random.default_rng(1)
    vocab = [
        f"{a} {b}" for a in ("red", "blue", "tea", "gift", "mug") for b in ("bag", "box", "set", "tin", "mat", "cup")
    ]
    preds = [pred(str(i), list(rng.choice(vocab, 5))) for i in range(20)]
    golds = [gold(str(i), list(rng.choice(vocab, 5))) for i in range(20)]
    enc = FakeEncoder(dim=4)  # low dimension: many pairs land between 0.6 and 0.9
    sweep = [agg["macro"]["f1"] for agg in run(preds, golds, enc)["tau_sweep"].values()]
    assert sweep == sorted(sweep, reverse=True)
    assert sweep[0] > sweep[-1]


# --- aggregation -----------------------------------------------------------


def test_bootstrap_interval_contains_the_point_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    items = []
    for _ in range(40):
        n_pred, n_gold = rng.integers(1, 8, size=2)
        tp = int(rng.integers(0, min(n_pred, n_gold) + 1))
        items.append({"tp_pred": tp, "tp_gold": tp, "n_pred": n_pred, "n_gold": n_gold, **prf(tp, tp, n_pred, n_gold)})
    agg = aggregate(items, np.random.default_rng(3), n_boot=300)
    for avg in ("macro", "micro"):
        for name in ("precision", "recall", "f1"):
            lo, hi = agg[avg][f"{name}_ci95"]
            assert lo <= agg[avg][name] <= hi and lo < hi
    assert agg["macro"]["f1"] == pytest.approx(np.mean([it["f1"] for it in items]))
    total_tp, total_pred = sum(it["tp_pred"] for it in items), sum(it["n_pred"] for it in items)
    assert agg["micro"]["precision"] == pytest.approx(total_tp / total_pred)
    assert aggregate(items, np.random.default_rng(3), n_boot=300) == agg
    assert aggregate(items, np.random.default_rng(3), n_boot=0)["macro"]["f1_ci95"] is None


def test_bootstrap_interval_is_the_2_5_and_97_5_percentiles_of_the_seeded_resamples():
    """The same resamples redone by hand: each row of rng.integers(0, n, (n_boot, n)) is one replicate."""
    rng = np.random.default_rng(5)
    items = []
    for _ in range(30):
        n_pred, n_gold = (int(x) for x in rng.integers(0, 6, size=2))
        tp = int(rng.integers(0, min(n_pred, n_gold) + 1))
        items.append({"tp_pred": tp, "tp_gold": tp, "n_pred": n_pred, "n_gold": n_gold, **prf(tp, tp, n_pred, n_gold)})
    n_boot = 250
    agg = aggregate(items, np.random.default_rng(9), n_boot=n_boot)
    idx = np.random.default_rng(9).integers(0, len(items), size=(n_boot, len(items)))
    for name in ("precision", "recall", "f1"):
        macro = [np.mean([items[i][name] for i in row]) for row in idx]
        assert agg["macro"][f"{name}_ci95"] == pytest.approx(list(np.percentile(macro, [2.5, 97.5])))
    micro = []
    for row in idx:
        tp_pred, tp_gold, n_pred, n_gold = (sum(items[i][k] for i in row) for k in ("tp_pred", "tp_gold", "n_pred", "n_gold"))
        micro.append(prf(tp_pred, tp_gold, n_pred, n_gold))
    for name in ("precision", "recall", "f1"):
        expected = np.percentile([m[name] for m in micro], [2.5, 97.5])
        assert agg["micro"][f"{name}_ci95"] == pytest.approx(list(expected))


def test_aggregate_of_nothing():
    assert aggregate([], np.random.default_rng(0)) == {"n_items": 0, "macro": None, "micro": None}


# --- bookkeeping -------------------------------------------------------------


def test_missing_unscored_and_failed_predictions():
    preds = [pred("a", ["Gift"]), pred("b", ["Gift"], status="parse_error"), pred("extra", ["Gift"])]
    golds = [gold("a", ["Gift"]), gold("b", ["Gift"]), gold("m", ["Gift"])]
    report = run(preds, golds)
    assert report["missing_predictions"] == [{R.LEVEL: "item", R.ID: "m"}]
    assert report["unscored_predictions"] == [{R.LEVEL: "item", R.ID: "extra"}]
    counts = report["counts"]
    assert (counts["n_items_scored"], counts["n_pred_not_ok"], counts["n_missing_predictions"]) == (3, 1, 1)
    assert headline(report)["recall"] == pytest.approx(1 / 3)  # b (not ok) and m (missing) score zero
    rows = {row[R.ID]: row for row in report["per_item"]}
    assert set(rows) == {"a", "b", "m"}
    assert rows["m"][R.STATUS] == "missing" and rows["m"]["unmatched_gold"] == ["gift"]
    assert rows["b"]["pred"] == []
    assert "missing 1" in format_report(report)


def test_each_unique_phrase_is_embedded_once():
    enc = FakeEncoder()
    run([pred("a", ["Gift", "gift!"]), pred("b", ["GIFT", "Mug"])], [gold("a", ["Gift"]), gold("b", ["mug"])], enc)
    assert len(enc.calls) == 1
    assert sorted(enc.calls[0]) == ["gift", "mug"]


def test_breakdown_by_level_and_gold_type():
    preds = [pred("a", ["Red", "Gift"]), pred("u1", ["Mug"], level="user")]
    golds = [
        gold("a", ["Red", "Vintage"], explicit=["Red"], implicit=["Vintage", "Gift"]),
        gold("u1", ["Tea"], level="user"),
    ]
    report = run(preds, golds)
    assert report["by_level"]["item"]["macro"]["f1"] == pytest.approx(0.5)
    assert report["by_level"]["user"]["macro"]["f1"] == 0.0
    typed = report["by_gold_type"]
    assert typed["explicit"]["macro"]["recall"] == 1.0
    assert typed["implicit"]["macro"]["recall"] == 0.5
    assert typed["explicit"]["n_items"] == 1  # only the item whose gold has the list
    only_users = run(preds, golds, level="user")
    assert only_users["counts"]["n_items_scored"] == 1 and list(only_users["by_level"]) == ["user"]


def test_per_item_row_lists_pairs_and_leftovers():
    row = run([pred("a", ["Red", "Blue"])], [gold("a", ["red", "Green"])])["per_item"][0]
    assert row["matched"] == [{"pred": "red", "gold": "red", "similarity": 1.0}]
    assert (row["unmatched_pred"], row["unmatched_gold"]) == (["blue"], ["green"])


def test_duplicate_gold_ids_are_an_error():
    with pytest.raises(ValueError, match="id=a"):
        run([], [gold("a", ["x"]), gold("a", ["y"])])


def test_metrics_are_flat_floats_with_a_primary_metric():
    report = run([pred("a", ["Gift"])], [gold("a", ["Gift"])])
    assert report["primary_metric"] == "macro_f1"
    assert report["metrics"]["macro_f1"] == 1.0
    assert "tau0.60_macro_f1" in report["metrics"] and "exact_micro_f1" in report["metrics"]
    assert all(isinstance(v, float) for v in report["metrics"].values())


# --- calibration -------------------------------------------------------------


def test_read_pairs_reports_path_and_line(tmp_path):
    good = tmp_path / "p.tsv"
    good.write_text("# comment\nphrase_a\tphrase_b\tlabel\nGift\tPresent\t1\n\nRed\tBlue\t0\n", encoding="utf-8")
    assert read_pairs(good) == [("Gift", "Present", 1), ("Red", "Blue", 0)]
    bad = tmp_path / "bad.tsv"
    bad.write_text("Gift\tPresent\t1\nRed\tBlue\tyes\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:2: label must be 0 or 1"):
        read_pairs(bad)
    bad.write_text("Gift Present 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:1: expected 3 tab-separated fields"):
        read_pairs(bad)


def test_pick_tau_separates_the_classes():
    sims = np.array([0.95, 0.9, 0.85, 0.7, 0.6, 0.4])
    labels = np.array([1, 1, 1, 0, 0, 0])
    chosen = pick_tau(sims, labels)
    assert 0.7 < chosen["tau"] <= 0.85 and chosen["f1"] == 1.0 and chosen["accuracy"] == 1.0
    with pytest.raises(ValueError, match="labelled 1 and pairs labelled 0"):
        pick_tau(sims, np.ones(6, dtype=int))


def test_calibrate_tau_end_to_end(tmp_path):
    enc = FakeEncoder({"gift": [1, 0], "present": [0.9, np.sqrt(1 - 0.81)], "doormat": [0.5, np.sqrt(0.75)]})
    path = tmp_path / "pairs.tsv"
    path.write_text("Gift\tPresent\t1\nGift\tDoormat\t0\n1.25L\t1.5L\t0\n1.25 L\t1.25l\t1\n", encoding="utf-8")
    result = calibrate_tau(path, enc)
    assert 0.5 < result["tau"] <= 0.9 and result["f1"] == 1.0
    assert result["n_pairs"] == 4 and result["false_positives"] == []


# --- CJK -----------------------------------------------------------------------


def test_default_english_embedder_refuses_cjk_with_a_clear_message():
    with pytest.raises(EmbedderError, match=r"--embedder.*multilingual"):
        check_cjk(["gift", "可口可乐"], "all-minilm-l6-v2", english_only=True)
    check_cjk(["gift", "café"], "all-minilm-l6-v2", english_only=True)  # no CJK: fine
    assert is_default_english(None) and is_default_english("sentence-transformers/all-MiniLM-L6-v2")
    assert not is_default_english("paraphrase-multilingual-MiniLM-L12-v2")
    # The default model is refused before it is even loaded.
    with pytest.raises(EmbedderError, match="可口可乐"):
        Embedder(None).encode(["可口可乐"])


def test_other_embedders_are_checked_by_their_unknown_tokens():
    unk = 100
    mostly_unknown = lambda p: [unk, unk, 7]  # noqa: E731
    readable = lambda p: [5, 6, 7]  # noqa: E731
    with pytest.raises(EmbedderError):
        check_cjk(["百事可乐"], "some-model", english_only=False, tokenize=mostly_unknown, unk_id=unk)
    check_cjk(["百事可乐"], "multilingual", english_only=False, tokenize=readable, unk_id=unk)


# --- the real bundled embedder ----------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return Embedder(None)


@pytest.mark.integration
def test_real_minilm_similarities(minilm):
    def sim(a, b):
        from ground.normalize import normalize_phrase

        na, nb = normalize_phrase(a), normalize_phrase(b)
        emb = minilm.encode([na, nb])
        return float(similarity_matrix([na], [nb], emb[:1], emb[1:])[0, 0]), float(emb[0] @ emb[1])

    assert sim("Christmas Decoration", "Xmas Decoration")[0] >= 0.8
    ruled, raw = sim("1.25L", "1.5L")
    assert raw > 0.85 and ruled == 0.0  # close embeddings, different products
    assert sim("Gift", "Present")[0] > sim("Gift", "Doormat")[0]


@pytest.mark.integration
def test_real_minilm_refuses_chinese_phrases(minilm):
    with pytest.raises(EmbedderError, match="multilingual"):
        evaluate_f1([pred("a", ["可口可乐"])], [gold("a", ["百事可乐"])], minilm, n_boot=0)
