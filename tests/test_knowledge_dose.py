"""bench/knowledge_dose.py: the dose-response series replaces exactly the asked share of each record's values
with other records' values (issue 25)."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

from bench.knowledge_dose import replaced

ROOT = Path(__file__).resolve().parents[1]


def record(rid: str, n: int, status: str = "ok") -> dict:
    return {"id": rid, "level": "item", "input": rid, "status": status, "model": "t", "template": "item",
            "reference_id": None, "raw": "",
            "explicit": [{"aspect": "Genre", "value": f"{rid}-g{i}"} for i in range(n)],
            "implicit": [{"aspect": "Mood", "value": f"{rid}-m{i}"} for i in range(n)],
            "key_phrases": [f"{rid}-p{i}" for i in range(n)] + ["copied"], "leaked": ["copied"]}


ROWS = [record("a", 4), record("b", 4), record("c", 2), record("d", 4, status="failed")]


def owner(value) -> str:
    text = value["value"] if isinstance(value, dict) else value
    return text.split("-")[0]


def test_share_zero_changes_nothing_and_one_leaves_no_own_value():
    same, counts = replaced(ROWS, 0.0, seed=0)
    assert same == ROWS and counts["replaced"] == 0
    gone, counts = replaced(ROWS, 1.0, seed=0)
    for before, after in zip(ROWS[:3], gone[:3]):
        for kind in ("explicit", "implicit", "key_phrases"):
            assert len(after[kind]) == len(before[kind])
            drawn = [v for v in after[kind] if v != "copied"]  # a copied value stays (the text leaves it out)
            assert drawn and all(owner(v) != before["id"] for v in drawn)  # other records' values only
    assert gone[3] == ROWS[3]  # a failed record is left alone (embed falls back to its input anyway)


def test_a_share_replaces_share_x_n_values_rounded_at_random_and_is_seeded():
    half, counts = replaced(ROWS, 0.5, seed=1)
    for before, after in zip(ROWS[:3], half[:3]):
        for kind in ("explicit", "implicit", "key_phrases"):
            n = sum(v != "copied" for v in before[kind])
            own = sum(owner(v) == before["id"] for v in after[kind])
            assert n - own in (n // 2, (n + 1) // 2) and ("copied" in after[kind]) == ("copied" in before[kind])
    assert half == replaced(ROWS, 0.5, seed=1)[0]
    many = [record(f"r{i}", 1) for i in range(400)]  # one value of each kind, most of them: a quarter replaced
    share = replaced(many, 0.25, seed=0)[1]
    assert abs(share["replaced"] / share["values"] - 0.25) < 0.04


def test_cli_writes_gzip_and_a_manifest(tmp_path):
    source = tmp_path / "k.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "dose" / "k25.jsonl.gz"
    done = subprocess.run([sys.executable, "-m", "bench.knowledge_dose", str(source), "--share", "0.25", "-o",
                           str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in gzip.open(out, "rt")]
    assert len(rows) == 4 and json.loads((tmp_path / "dose" / "k25.json").read_text())["share"] == 0.25
    bad = subprocess.run([sys.executable, "-m", "bench.knowledge_dose", str(source), "--share", "2", "-o",
                          str(out)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "--share must be within [0, 1]" in bad.stderr
