"""Only a user's mistake becomes one line; a bug anywhere (a library included) keeps its traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs `kgen sample` with numpy's random generator broken the way a library bug would break it.
LIBRARY_BUG = """
import sys, numpy
def broken(*args, **kwargs):
    raise ValueError("boom inside numpy")
numpy.random.default_rng = broken
from kgen.cli import app
sys.argv = ["kgen", *sys.argv[1:]]
app()
"""


def run(args, code=None, env=None):
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "kgen.cli", *args]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def items(tmp_path, lines):
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_value_error_raised_inside_a_library_shows_its_traceback(tmp_path):
    path = items(tmp_path, [json.dumps({"item_id": "a", "name": "Mug"})])
    result = run(["sample", "-i", str(path), "-o", str(tmp_path / "p.jsonl"), "--n", "1"], code=LIBRARY_BUG)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "boom inside numpy" in result.stderr and "broken" in result.stderr
    assert not (tmp_path / "p.jsonl").exists()


def test_a_bad_input_file_is_still_one_line(tmp_path):
    path = items(tmp_path, [json.dumps({"item_id": "a", "name": "Mug"}), '{"item_id": "b"'])
    result = run(["sample", "-i", str(path), "-o", str(tmp_path / "p.jsonl")])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {path}:2: malformed JSON (Expecting ',' delimiter at column 16)"]


def test_debug_shows_the_traceback_of_a_user_error_too(tmp_path):
    path = items(tmp_path, ['{"item_id": "b"'])
    for args, env in ((["--debug"], None), ([], {"MSD_DEBUG": "1"})):
        result = run([*args, "sample", "-i", str(path), "-o", str(tmp_path / "p.jsonl")], env=env)
        assert result.returncode == 1
        assert "Traceback" in result.stderr and "RecordError" in result.stderr and "malformed JSON" in result.stderr
