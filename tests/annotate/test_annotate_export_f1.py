"""Must show 4: a gold file exported from the app is scored by `distill eval-f1`.

Gold is made through the served app's API, exported with `annotate export`, and scored with the
teacher's own answers as predictions: the item accepted unchanged scores F1 = 1, the edited one less.
"""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pytest
from gradio_client import Client
from typer.testing import CliRunner

import eval.embedder
from annotate.cli import app as annotate_cli
from annotate_helpers import ACCOUNTS, IDS, knowledge_records, start_server, stop_server
from ground.files import write_jsonl
from ground import records as R

UNCHANGED, EDITED = IDS[0], IDS[1]
REJECTED = {"Health-Conscious", "Suitable for Gatherings"}


class HashEmbedder:
    """A deterministic stand-in for the sentence-transformer: one random unit vector per phrase."""

    def __init__(self, name=None, show_progress=False, **_):
        self.name, self.path = name, f"hash:{name}"

    def encode(self, phrases):
        rows = []
        for phrase in phrases:
            seed = int.from_bytes(hashlib.sha256(phrase.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=64)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)


def annotate(doc: dict, edited: bool) -> dict:
    doc = copy.deepcopy(doc)
    for row in doc["rows"]:
        row["decision"] = "reject" if edited and row["phrase"] in REJECTED else "accept"
    if edited:
        doc["rows"].append({"phrase": "Party Drink", "type": "implicit", "decision": "add", "origin": None})
    return doc


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two annotators agree on two items through the app; returns (gold path, knowledge path)."""
    tmp = tmp_path_factory.mktemp("export")
    knowledge = tmp / "knowledge.jsonl"
    write_jsonl(knowledge, knowledge_records())
    db = tmp / "gold.sqlite"
    proc, url = start_server(knowledge, db, "--per-item", "2")
    try:
        for user in ("alice", "bob"):
            client = Client(url, auth=(user, ACCOUNTS[user]), verbose=False)
            for item, edited in ((UNCHANGED, False), (EDITED, True)):
                loaded = client.predict(f"item:{item}", api_name="/load_item")
                result = client.predict(loaded["key"], annotate(loaded["doc"], edited), loaded["version"],
                                        "submitted", api_name="/save")
                assert result["ok"], result
    finally:
        stop_server(proc)
    gold = tmp / "gold.jsonl"
    result = CliRunner().invoke(annotate_cli, ["export", "--db", str(db), "-o", str(gold)])
    assert result.exit_code == 0, result.output
    return gold, knowledge


def score(gold, knowledge, out):
    from distill.cli import app as distill_cli

    result = CliRunner().invoke(distill_cli, ["eval-f1", "--pred", str(knowledge), "--gold", str(gold), "-o", str(out),
                                              "--n-boot", "0"])
    assert result.exit_code == 0, result.output
    return {row[R.ID]: row for row in map(json.loads, (out / "per_item.jsonl").read_text().splitlines())}


def test_exported_gold_has_the_annotators_work(exported):
    gold, _ = exported
    rows = {r[R.ID]: r for r in R.read_records(gold, "gold")}
    assert set(rows) == {UNCHANGED, EDITED}
    assert "Party Drink" in rows[EDITED][R.KEY_PHRASES] and not REJECTED & set(rows[EDITED][R.KEY_PHRASES])
    assert rows[EDITED]["annotators"] == ["alice", "bob"]


def test_distill_eval_f1_scores_the_exported_gold(exported, tmp_path, monkeypatch):
    monkeypatch.setattr(eval.embedder, "Embedder", HashEmbedder)
    per_item = score(*exported, tmp_path / "f1")
    assert per_item[UNCHANGED]["f1"] == pytest.approx(1.0)
    # 6 teacher phrases, gold keeps 4 of them and adds 1: P = 4/6, R = 4/5, F1 = 8/11
    assert per_item[EDITED]["f1"] == pytest.approx(8 / 11)
    assert per_item[EDITED]["unmatched_gold"] == ["party drink"]


@pytest.mark.integration
def test_distill_eval_f1_with_the_bundled_embedder(exported, tmp_path):
    per_item = score(*exported, tmp_path / "f1")
    assert per_item[UNCHANGED]["f1"] == pytest.approx(1.0)
    assert per_item[EDITED]["f1"] < 1.0
