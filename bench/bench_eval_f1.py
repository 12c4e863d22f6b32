"""Time of `distill eval-f1` on 10,000 synthetic items with the real bundled MiniLM on CPU.

Gold and predicted sets of 5-10 phrases are drawn from a vocabulary of a few thousand
shop-like phrases; predictions mix exact copies, surface variants (case, hyphens, "Xmas"),
other vocabulary phrases (near misses: another colour or size) and made-up word
combinations, so most unique phrases come from the predictions, as with a real student. Embedding time and the
rest (normalisation, matching, bootstrap) are timed separately; figures go to
bench/results/eval_f1.jsonl.

    .venv/bin/python -m bench.bench_eval_f1 --items 10000
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import record
from ground.runinfo import peak_rss_mb

from eval.embedder import Embedder
from eval.f1_report import evaluate_f1
from ground.files import write_json, write_jsonl
from ground import records as R

COLOURS = "red blue pink green white black ivory gold silver pastel".split()
MOTIFS = ["retrospot", "polka dot", "union jack", "spaceboy", "dolly girl", "paisley", "floral", "heart", "star", "owl"]
PRODUCTS = [
    "lunch bag", "cake cases", "tea light holder", "jumbo bag", "water bottle", "hand warmer", "doormat",
    "cushion cover", "photo frame", "wall clock", "alarm clock", "tea towel", "mug", "gift wrap", "greeting card",
    "bunting", "lantern", "cake tin", "storage jar", "notebook", "piggy bank", "coat hanger", "garden sign",
    "candle", "bird ornament", "paper chain kit", "pencil case", "apron", "oven glove", "chalkboard",
]  # fmt: skip
TAGS = [
    "christmas decoration", "easter decoration", "birthday gift", "wedding gift", "home decor", "vintage style",
    "retro design", "for kids", "for adults", "kitchen storage", "party supplies", "baking accessories",
    "affordable", "high quality", "handmade", "indoor use", "outdoor use", "garden decoration", "office use",
]  # fmt: skip
SIZES = ["pack of 6", "pack of 12", "pack of 24", "set of 3", "set of 6", "200g", "500ml", "1.25l", "30cm", "large"]
WORDS = sorted({w for phrase in COLOURS + MOTIFS + PRODUCTS + TAGS for w in phrase.split()})
VARIANTS = {"christmas": "Xmas", "tea light": "T-Light", "photo frame": "Picture Frame", " of ": " Of "}


def vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    """A few thousand distinct shop phrases."""
    combos = [f"{c} {m}" for c, m in itertools.product(COLOURS, MOTIFS)]
    combos += [f"{m} {p}" for m, p in itertools.product(MOTIFS, PRODUCTS)]
    combos += [f"{c} {m} {p}" for c, m, p in itertools.product(COLOURS, MOTIFS, PRODUCTS)]
    combos += [f"{c} {p}" for c, p in itertools.product(COLOURS, PRODUCTS)]
    combos += [f"{p} {s}" for p, s in itertools.product(PRODUCTS, SIZES)]
    combos += TAGS + PRODUCTS + SIZES
    vocab = sorted(set(combos))
    return [vocab[i] for i in rng.permutation(len(vocab))[:size]]


def variant(phrase: str, rng: np.random.Generator) -> str:
    """A surface variant an annotator would accept: case, hyphens, a known synonym."""
    for a, b in VARIANTS.items():
        if a in phrase:
            return phrase.replace(a, b)
    return str(rng.choice([phrase.upper(), phrase.title(), phrase.replace(" ", "-")]))


def novel(rng: np.random.Generator) -> str:
    """A phrase the student made up: 2-4 shop words, mostly outside the vocabulary."""
    return " ".join(rng.choice(WORDS, size=rng.integers(2, 5)))


def predicted(gold: list[str], vocab: list[str], rng: np.random.Generator) -> list[str]:
    """Copies, variants, vocabulary phrases and made-up phrases, 5-10 in all."""
    out = []
    for g in gold:
        r = rng.random()
        if r < 0.4:
            out.append(g)
        elif r < 0.7:
            out.append(variant(g, rng))
    while len(out) < rng.integers(5, 11):
        out.append(vocab[rng.integers(len(vocab))] if rng.random() < 0.5 else novel(rng))
    return out[:10]


def synthetic(n: int, vocab: list[str], rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    preds, golds = [], []
    for i in range(n):
        gold = [vocab[j] for j in rng.choice(len(vocab), rng.integers(5, 11), replace=False)]
        level = "user" if i % 10 == 0 else "item"
        golds.append({R.ID: str(i), R.LEVEL: level, R.KEY_PHRASES: gold, R.EXPLICIT: gold[:3], R.IMPLICIT: gold[3:]})
        phrases = predicted(gold, vocab, rng)
        preds.append({R.ID: str(i), R.LEVEL: level, R.INPUT: "", R.KEY_PHRASES: phrases, R.RAW: "", R.STATUS: "ok"})
    return preds, golds


class TimedEncoder:
    """Wraps the embedder to time encoding on its own."""

    def __init__(self, inner: Embedder):
        self.inner, self.seconds, self.n = inner, 0.0, 0

    def encode(self, phrases: list[str]) -> np.ndarray:
        start = time.perf_counter()
        out = self.inner.encode(phrases)
        self.seconds += time.perf_counter() - start
        self.n += len(phrases)
        return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--vocab", type=int, default=3000)
    p.add_argument("--n-boot", type=int, default=1000)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    preds, golds = synthetic(a.items, vocabulary(rng, a.vocab), rng)
    start = time.perf_counter()
    embedder = Embedder(None)
    _ = embedder.model
    load_s = time.perf_counter() - start
    encoder = TimedEncoder(embedder)
    start = time.perf_counter()
    report = evaluate_f1(preds, golds, encoder, n_boot=a.n_boot)
    eval_s = time.perf_counter() - start
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_json(Path(tmp) / "f1.json", {k: v for k, v in report.items() if k != "per_item"})
        write_jsonl(Path(tmp) / "per_item.jsonl", report["per_item"])
    write_s = time.perf_counter() - start
    import torch

    record(
        "eval_f1",
        {
            "items": a.items, "vocab": a.vocab, "n_boot": a.n_boot, "embedder": "all-MiniLM-L6-v2 (bundled)",
            "torch_threads": torch.get_num_threads(), "unique_phrases_embedded": encoder.n,
            "model_load_s": round(load_s, 2), "embed_s": round(encoder.seconds, 2),
            "match_and_bootstrap_s": round(eval_s - encoder.seconds, 2), "write_outputs_s": round(write_s, 2),
            "total_s": round(load_s + eval_s + write_s, 2), "peak_rss_mb": peak_rss_mb(),
            "macro_f1": round(report["macro_f1"], 4), "exact_macro_f1": round(report["exact"]["macro"]["f1"], 4),
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
