"""bench.knowledge_records: a finished run kept under bench/knowledge with its manifest; an unfinished one refused."""

import gzip
import json

import pytest

from bench.knowledge_records import implicit_sources, keep


def record(item_id: str, text: str, implicit: list[str], leaked: list[str]) -> dict:
    return {"id": item_id, "level": "item", "input": text, "status": "ok", "raw": "", "explicit": [],
            "implicit": [{"aspect": "a", "value": v} for v in implicit], "key_phrases": implicit, "leaked": leaked}


def test_implicit_values_are_counted_by_where_they_came_from():
    rows = [record("1", "Toy Story (1995). Genres: Animation", ["1995", "Pixar", "Feel-good Viewers"],
                   ["Feel-good Viewers"]),
            record("2", "Heat (1995). Genres: Action", ["action", "Heat"], [])]
    assert implicit_sources(rows) == {"total": 5, "copied_from_example": 1, "repeat_input": 3, "own": 1}


def write_run(tmp_path, rows: list[dict], inputs: int):
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"item_id": str(i)}) + "\n" for i in range(inputs)))
    run = tmp_path / "run.jsonl"
    run.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "run.run.json").write_text(json.dumps({"config": {"input": str(items)}, "metrics": {}}))
    return run


def test_a_finished_run_is_kept_gzipped_with_its_manifest(tmp_path):
    rows = [record("0", "Heat (1995)", ["Michael Mann"], []), record("1", "Jumanji (1995)", ["1995"], [])]
    manifest = keep(write_run(tmp_path, rows, 2), "ml/items", "kgen generate ...", False, tmp_path / "out")
    kept = [json.loads(line) for line in gzip.open(tmp_path / "out" / "ml" / "items.jsonl.gz", "rt")]
    assert kept == rows
    on_disk = json.loads((tmp_path / "out" / "ml" / "items.json").read_text())
    assert on_disk["complete"] and on_disk["records"] == 2 and on_disk["command"] == "kgen generate ..."
    assert manifest["implicit_values"] == {"total": 2, "copied_from_example": 0, "repeat_input": 1, "own": 1}


def test_an_unfinished_run_is_refused_unless_partial(tmp_path):
    run = write_run(tmp_path, [record("0", "Heat (1995)", [], [])], 3)
    with pytest.raises(SystemExit, match="1 records for 3 inputs"):
        keep(run, "x", "", False, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert keep(run, "x", "", True, tmp_path / "out")["complete"] is False
