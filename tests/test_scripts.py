"""bench/ and scripts/ import the installed packages: no sys.path edits, and every file imports as it is run
(`python -m bench.<name>` from the repository root, `python scripts/<name>.py`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = sorted(p for p in (ROOT / "bench").glob("*.py") if p.name != "__init__.py")
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))


def module_level_path_edits(path: Path) -> list[int]:
    """Lines where the module, outside any function, changes sys.path (a function may, on request: --code DIR)."""
    tree = ast.parse(path.read_text(), str(path))
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    return [node.lineno for node in ast.walk(tree) if id(node) not in inside and isinstance(node, ast.Attribute)
            and node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys"]


def test_bench_and_scripts_do_not_edit_sys_path():
    edits = {str(p.relative_to(ROOT)): lines for p in BENCH + SCRIPTS if (lines := module_level_path_edits(p))}
    assert not edits, edits


def test_the_check_sees_a_path_edit(tmp_path):
    script = tmp_path / "x.py"
    script.write_text("import sys\nsys.path.insert(0, 'here')\ndef main():\n    sys.path.append('there')\n")
    assert module_level_path_edits(script) == [2]


def test_every_bench_module_imports_as_it_is_run():
    code = f"import importlib\nfor name in {[p.stem for p in BENCH]!r}:\n    importlib.import_module('bench.' + name)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_script_imports_from_outside_the_checkout(tmp_path):
    """As `python scripts/x.py` runs it: the checkout root is not on sys.path, only the installed packages are."""
    code = f"import runpy\nfor path in {[str(p) for p in SCRIPTS]!r}:\n    runpy.run_path(path, run_name='imported')\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_bad_size_of_the_main_job_is_one_usage_error():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "main_job.py"), "--scale", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith("scale must be >= 1, got 0")
    assert "started" not in done.stdout
