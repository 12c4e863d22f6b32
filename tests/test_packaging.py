"""A non-editable install carries the data the code reads: prompts, the reference pool, the app's static files."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_prompts_pool_dictionary_and_static_files(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("msd_toolkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for pattern in ("prompts/*.j2", "prompts/*.jsonl", "prompts/*.tsv",
                                                              "annotate/static/*")
               for p in ROOT.glob(pattern)}
    assert {"prompts/item.j2", "prompts/pool_items.jsonl", "prompts/synonyms.tsv", "annotate/static/annotate.js"} <= shipped
    assert shipped <= names, sorted(shipped - names)
    for package in ("ground", "kgen", "distill", "eval", "annotate", "prompts", "ctr", "pipeline"):
        assert f"{package}/__init__.py" in names
    assert not any(n.startswith(("tests/", "bench/", "scripts/", "data/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for command in ("kgen = kgen.cli:app", "distill = distill.cli:app", "annotate = annotate.cli:app"):
        assert command in scripts
