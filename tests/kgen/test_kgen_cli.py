"""`kgen` command line: bad input stops with path:line before any model is loaded; sampling writes its run info."""

import json

from typer.testing import CliRunner

from kgen.cli import app

runner = CliRunner()


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_line_names_file_and_line(tmp_path):
    items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug"}', '{"item_id": "b", "name": '])
    out = tmp_path / "k.jsonl"
    # A teacher that cannot load proves the error comes before any model is touched.
    result = runner.invoke(app, ["generate", "-i", str(items), "-o", str(out), "--teacher", "transformers:/nonexistent"])
    assert result.exit_code == 1
    assert f"{items}:2: malformed JSON" in result.output
    assert not out.exists()


def test_missing_field_names_file_and_line(tmp_path):
    items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug"}', '{"item_id": "b"}'])
    result = runner.invoke(app, ["generate", "-i", str(items), "-o", str(tmp_path / "k.jsonl")])
    assert result.exit_code == 1 and f"{items}:2: missing field 'name'" in result.output


def test_user_history_with_unknown_item(tmp_path):
    items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug"}'])
    users = write(tmp_path / "users.jsonl", ['{"user_id": "u1", "history": ["a"]}', '{"user_id": "u2", "history": ["a", "zz"]}'])
    result = runner.invoke(app, ["generate", "--level", "user", "-i", str(users), "--items", str(items),
                                 "-o", str(tmp_path / "k.jsonl")])
    assert result.exit_code == 1 and f"{users}:2:" in result.output and "zz" in result.output


def test_bad_teacher_spec_is_one_line(tmp_path):
    items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug"}'])
    result = runner.invoke(app, ["generate", "-i", str(items), "-o", str(tmp_path / "k.jsonl"), "--teacher", "gpt4"])
    assert result.exit_code == 1 and "backend:model" in result.output and result.output.count("\n") == 1


def test_sample_writes_rows_and_run_info(tmp_path):
    rows = [json.dumps({"item_id": str(i), "name": f"n{i}", "category": "ab"[i % 2],
                        "stats": {"exposures": 10 + i, "clicks": i}}) for i in range(40)]
    items = write(tmp_path / "items.jsonl", rows)
    out = tmp_path / "picked.jsonl"
    result = runner.invoke(app, ["sample", "-i", str(items), "-o", str(out), "--n", "10", "--by", "category",
                                 "--allocation", "equal", "--weight", "exposures"])
    assert result.exit_code == 0, result.output
    picked = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(picked) == 10 and sum(p["category"] == "a" for p in picked) == 5
    assert all(0 < p["inclusion_prob"] <= 1 and p["sampling_weight"] > 0 for p in picked)
    info = json.loads((tmp_path / "picked.run.json").read_text())
    assert info["config"]["allocation"] == "equal" and info["metrics"]["picked"] == 10
