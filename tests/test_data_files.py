"""The shipped sample and gold files: valid records, consistent ids, honest stats."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from ctr import retail
from ground import records as R
from kgen.inputs import item_input, user_input

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = DATA / "sample"
GOLD = DATA / "gold" / "gold.jsonl"


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return R.read_records(SAMPLE / "items.jsonl", "item")


@pytest.fixture(scope="module")
def users() -> list[dict]:
    return R.read_records(SAMPLE / "users.jsonl", "user")


@pytest.fixture(scope="module")
def interactions() -> list[dict]:
    return R.read_records(SAMPLE / "interactions.jsonl", "interaction")


@pytest.fixture(scope="module")
def gold() -> list[dict]:
    return R.read_records(GOLD, "gold")


def test_item_ids_unique_and_stats_honest(items):
    ids = [r[R.ITEM_ID] for r in items]
    assert len(ids) == len(set(ids)) >= 250
    assert all(isinstance(i, str) for i in ids)
    for r in items:
        stats = r[R.STATS]
        assert 0 < stats[R.CLICKS] <= stats[R.EXPOSURES], r[R.ITEM_ID]
        assert r[R.ATTRIBUTES]["unit_price"] > 0
        assert r[R.NAME] and r[R.NAME] == " ".join(r[R.NAME].split())
        # Cleaning changes only case, spacing and stray commas/dots, never the words.
        assert _letters(r[R.NAME]) == _letters(r[R.ORIGINAL_NAME]), r[R.ITEM_ID]


def _letters(text: str) -> str:
    return re.sub(r"[\s,.]", "", text.lower())


@pytest.mark.parametrize(("item_id", "name", "original"), [
    ("22720", "Set of 3 Cake Tins Pantry Design", "SET OF 3 CAKE TINS PANTRY DESIGN "),
    ("85123A", "White Hanging Heart T-Light Holder", "WHITE HANGING HEART T-LIGHT HOLDER"),
    ("22086", "Paper Chain Kit 50's Christmas", "PAPER CHAIN KIT 50'S CHRISTMAS "),
    ("21731", "Red Toadstool LED Night Light", "RED TOADSTOOL LED NIGHT LIGHT"),
    ("22423", "Regency Cakestand 3 Tier", "REGENCY CAKESTAND 3 TIER"),
])
def test_names_are_readable_and_originals_exact(items, item_id, name, original):
    row = next(r for r in items if r[R.ITEM_ID] == item_id)
    assert (row[R.NAME], row[R.ORIGINAL_NAME]) == (name, original)


@pytest.mark.parametrize(("raw", "clean"), [
    ("SET 3 RETROSPOT TEA,COFFEE,SUGAR", "Set 3 Retrospot Tea, Coffee, Sugar"),
    ("POLYESTER FILLER PAD 45x45cm", "Polyester Filler Pad 45x45cm"),
    ("SET/5 RED RETROSPOT LID GLASS BOWLS", "Set/5 Red Retrospot Lid Glass Bowls"),
    ("RED WOOLLY HOTTIE WHITE HEART.", "Red Woolly Hottie White Heart"),
    ("HAND WARMER UNION JACK", "Hand Warmer Union Jack"),
])
def test_clean_name(raw, clean):
    assert retail.clean_name(raw) == clean


@pytest.mark.parametrize(("raw", "category"), [
    ("COFFEE MUG APPLES DESIGN", "kitchen & dining"),  # DESIGN must not read as SIGN
    ("BATHROOM METAL SIGN", "home decor"),  # the type (sign) wins over the theme (bathroom)
    ("JUMBO BAG 50'S CHRISTMAS ", "christmas & seasonal"),
    ("SET OF 20 VINTAGE CHRISTMAS NAPKINS", "christmas & seasonal"),
    ("PACK OF 72 RETROSPOT CAKE CASES", "party & celebration"),
    ("GROW YOUR OWN HERBS SET OF 3", "garden & outdoor"),
    ("FRENCH ENAMEL CANDLEHOLDER", "candles & lights"),
    ("BLUE GEISHA GIRL ", "other"),
])
def test_categorize_rules(raw, category):
    assert retail.categorize(raw) == category


def test_categories_cover_at_least_eight_real_values(items):
    counts = Counter(r[R.CATEGORY] for r in items)
    assert len([c for c in counts if c != "other"]) >= 8
    assert counts["other"] < len(items) / 10


def test_users_unique_histories_reference_items(users, items):
    item_ids = {r[R.ITEM_ID] for r in items}
    ids = [u[R.USER_ID] for u in users]
    assert len(ids) == len(set(ids)) >= 250
    for u in users:
        assert u[R.USER_ID].startswith("u") and u[R.USER_ID][1:].isdigit()
        history = u[R.HISTORY]
        assert 3 <= len(history) <= 50, u[R.USER_ID]
        assert len(history) == len(set(history)), u[R.USER_ID]
        assert set(history) <= item_ids, u[R.USER_ID]
        assert u[R.PROFILE]["country"]


def test_interactions_reference_sample_and_have_both_labels(interactions, users, items):
    user_ids = {u[R.USER_ID] for u in users}
    item_ids = {r[R.ITEM_ID] for r in items}
    assert {r[R.USER_ID] for r in interactions} <= user_ids
    assert {r[R.ITEM_ID] for r in interactions} <= item_ids
    labels = Counter(r[R.LABEL] for r in interactions)
    assert labels[1] > 0 and labels[0] > 0
    assert all(isinstance(r[R.TS], int) and r[R.TS] > 1_280_000_000 for r in interactions)
    # A negative is an item the user never bought, so no (user, item) pair carries both labels.
    pos = {(r[R.USER_ID], r[R.ITEM_ID]) for r in interactions if r[R.LABEL] == 1}
    assert not any((r[R.USER_ID], r[R.ITEM_ID]) in pos for r in interactions if r[R.LABEL] == 0)
    assert (SAMPLE / "interactions.jsonl").stat().st_size < 3_000_000


def test_every_first_purchase_in_history_is_a_positive(interactions, users):
    bought = {(r[R.USER_ID], r[R.ITEM_ID]) for r in interactions if r[R.LABEL] == 1}
    assert all((u[R.USER_ID], i) in bought for u in users for i in u[R.HISTORY])


def test_gold_validates_and_points_into_sample(gold, items, users):
    items_by_id = {r[R.ITEM_ID]: r for r in items}
    users_by_id = {u[R.USER_ID]: u for u in users}
    levels = Counter(g[R.LEVEL] for g in gold)
    assert levels["item"] >= 60 and levels["user"] >= 20
    assert len({(g[R.LEVEL], g[R.ID]) for g in gold}) == len(gold)
    for g in gold:
        if g[R.LEVEL] == "item":
            assert g[R.INPUT] == item_input(items_by_id[g[R.ID]])
        else:
            assert g[R.INPUT] == user_input(users_by_id[g[R.ID]], items_by_id, max_history=20)


def test_gold_phrases_follow_the_guideline(gold, items):
    categories = {r[R.ITEM_ID]: r[R.CATEGORY] for r in items}
    for g in gold:
        phrases = g[R.KEY_PHRASES]
        low = 5 if g[R.LEVEL] == "item" else 6
        assert low <= len(phrases) <= 10, g[R.ID]
        assert phrases == g[R.EXPLICIT] + g[R.IMPLICIT], g[R.ID]
        assert g[R.EXPLICIT] and g[R.IMPLICIT], g[R.ID]
        assert len({p.lower() for p in phrases}) == len(phrases), g[R.ID]
        assert all(1 <= len(p.split()) <= 4 for p in phrases), g[R.ID]
        assert g[R.ANNOTATOR] == "lead-annotator-1" and g["guideline"] == "v1"
    assert len({categories[g[R.ID]] for g in gold if g[R.LEVEL] == "item"}) >= 10


def test_build_summary_matches_the_files(items, users, interactions):
    summary = json.loads((SAMPLE / "build.json").read_text(encoding="utf-8"))
    rows = {"items.jsonl": len(items), "users.jsonl": len(users), "interactions.jsonl": len(interactions)}
    assert {name: f["rows"] for name, f in summary["files"].items()} == rows
    assert summary["sample_categories"] == dict(Counter(r[R.CATEGORY] for r in items))
    assert summary["positives"] == sum(r[R.LABEL] for r in interactions)


def test_movie_gold_follows_its_guideline():
    """data/gold/ml-1m.jsonl: ML-1M movies held out of the domain student's training, as `ctr prepare` renders them."""
    gold = R.read_records(DATA / "gold" / "ml-1m.jsonl", "gold")
    assert len(gold) >= 50 and len({g[R.ID] for g in gold}) == len(gold)
    for g in gold:
        text = g[R.INPUT]
        year = re.fullmatch(r".+ \((\d{4})\)\. Genres: (.+)", text)
        assert year and g[R.LEVEL] == "item", g[R.ID]
        phrases = g[R.KEY_PHRASES]
        assert 5 <= len(phrases) <= 10 and phrases == g[R.EXPLICIT] + g[R.IMPLICIT], g[R.ID]
        assert g[R.EXPLICIT][0] == year.group(1) and g[R.IMPLICIT], g[R.ID]
        assert all(p.lower() in text.lower() for p in g[R.EXPLICIT]), g[R.ID]  # explicit: stated by the input
        assert not any(p.lower() in text.lower() for p in g[R.IMPLICIT]), g[R.ID]  # implicit: not in it
        assert len({p.lower() for p in phrases}) == len(phrases), g[R.ID]
        assert all(1 <= len(p.split()) <= 4 for p in phrases), g[R.ID]
        assert g[R.ANNOTATOR] == "movie-annotator-1" and g["guideline"] == "movies-v1"
