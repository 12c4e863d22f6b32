"""`kgen` command line: bad input stops with path:line before any model is loaded; sampling writes its run info."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

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


# --- nothing the user had is destroyed; a user's mistake is one `path:line` line, before any model loads ---

NO_MODEL = ["--teacher", "transformers:/nonexistent"]  # proves the error comes before any model is touched


def one_line_error(result, *parts):
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert all(p in result.output for p in parts), result.output


def test_duplicate_input_ids_are_refused_with_both_lines(tmp_path):
    items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug"}', '{"item_id": "b", "name": "Cup"}',
                                             '{"item_id": "a", "name": "Mug 2"}'])
    out = tmp_path / "k.jsonl"
    result = runner.invoke(app, ["generate", "-i", str(items), "-o", str(out), *NO_MODEL])
    one_line_error(result, f"{items}:3: duplicate id 'a' (first on line 1)")
    assert not out.exists()


def test_empty_input_is_refused_before_any_model(tmp_path):
    items = write(tmp_path / "items.jsonl", [""])
    result = runner.invoke(app, ["generate", "-i", str(items), "-o", str(tmp_path / "k.jsonl"), *NO_MODEL])
    one_line_error(result, f"{items}: no records")


def test_invalid_utf8_names_the_line(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_bytes(b'{"item_id": "a", "name": "Mug"}\n{"item_id": "b", "name": "Caf\xe9"}\n')
    result = runner.invoke(app, ["generate", "-i", str(items), "-o", str(tmp_path / "k.jsonl"), *NO_MODEL])
    one_line_error(result, f"{items}:2: not valid UTF-8 (byte 0xe9")


def test_sample_and_reparse_refuse_an_output_folder(tmp_path):
    items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug"}'])
    knowledge = write(tmp_path / "k.jsonl", [json.dumps({"id": "a", "level": "item", "input": "Mug", "key_phrases": [],
                                                         "raw": "Key Features: Mug", "status": "ok"})])
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    one_line_error(runner.invoke(app, ["sample", "-i", str(items), "-o", str(folder), "--n", "1"]), f"{folder}: is a folder")
    one_line_error(runner.invoke(app, ["reparse", "-i", str(knowledge), "-o", str(folder)]), f"{folder}: is a folder")
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_sample_by_a_field_no_row_has_is_refused(tmp_path):
    items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug", "category": "x"}', '{"item_id": "b", "name": "Cup"}'])
    result = runner.invoke(app, ["sample", "-i", str(items), "-o", str(tmp_path / "p.jsonl"), "--by", "categroy"])
    one_line_error(result, f"{items}: no row has a value for field 'categroy'")
    assert not (tmp_path / "p.jsonl").exists()


def test_sample_weight_on_a_row_without_stats_names_the_line(tmp_path):
    items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug", "stats": {"exposures": 3}}',
                                             '{"item_id": "b", "name": "Cup"}'])
    result = runner.invoke(app, ["sample", "-i", str(items), "-o", str(tmp_path / "p.jsonl"), "--weight", "exposures"])
    one_line_error(result, f"{items}:2: stats.exposures must be a number")


def test_reparse_keeps_a_status_it_does_not_know(tmp_path):
    row = {"id": "a", "level": "item", "input": "Mug", "key_phrases": [], "raw": "Key Features: Mug, Gift",
           "status": "content_filter"}
    knowledge = write(tmp_path / "k.jsonl", [json.dumps(row)])
    out = tmp_path / "re.jsonl"
    result = runner.invoke(app, ["reparse", "-i", str(knowledge), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["status"] == "content_filter" and "content_filter" in result.output


def test_an_output_under_a_file_is_one_line(tmp_path):
    items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug"}'])
    out = items / "picked.jsonl"  # a "folder" that is a file: nothing can be written there
    result = runner.invoke(app, ["sample", "-i", str(items), "-o", str(out), "--n", "1"])
    one_line_error(result, f"{out}: cannot write here (")
    assert items.read_text() == '{"item_id": "a", "name": "Mug"}\n'


def test_generate_on_an_output_another_process_is_writing_is_refused(tmp_path):
    """A real second process holds the output's lock mid-run; `kgen generate` on it stops at once, changing nothing."""
    out, n = tmp_path / "k.jsonl", 400
    script = Path(__file__).with_name("kill_target.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, script, str(out), str(n), "--delay", "0.05"], env=env,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300  # generous: the process may start slowly on a busy machine
        while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
            time.sleep(0.02)
        items = write(tmp_path / "items.jsonl", ['{"item_id": "a", "name": "Mug"}'])
        result = runner.invoke(app, ["generate", "-i", str(items), "-o", str(out), "--reference", "none",
                                     "--answer-format", "json", *NO_MODEL])
        assert proc.poll() is None, "the first run ended before the second started: nothing was checked"
        one_line_error(result, f"{out}: another run is writing this output")
    finally:
        proc.kill()
        proc.wait()
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines(keepends=True) if line.endswith("\n")]
    assert ids and len(ids) == len(set(ids)) and all(i.startswith("x") for i in ids)  # only the first run wrote
