"""Plant each bug of issue #13 in this checkout, run the tests that should catch it, record the failures, revert.

Run from a checkout root: .venv/bin/python scripts/check_planted_bugs.py [name ...] (a clean checkout: it edits files and restores them with git checkout)
Writes one JSON line per plant to stdout.
"""

import json
import os
import re
import subprocess
import sys
import time

RUN = ["tests/kgen/test_run.py"]
CLI = ["tests/kgen/test_kgen_cli.py"]
OPENAI = ["tests/test_teacher_openai.py"]
PLANTS = {
    "1 numbers rule or->and": ("eval/keyphrase_f1.py", "bool(a or b) and a != b", "bool(a and b) and a != b",
                               ["tests/test_keyphrase_f1.py", "tests/test_normalize.py"]),
    "2 interval 2.5/97.5->25/75": ("eval/keyphrase_f1.py", "[2.5, 97.5]", "[25, 75]",
                                   ["tests/test_keyphrase_f1.py", "tests/test_eval_f1_cli.py"]),
    "3 append_line: no flush, no fsync": ("ground/files.py", "    fh.flush()\n    os.fsync(fh.fileno())\n\n\n@contextmanager\ndef atomic_folder",
                                          "\n\n@contextmanager\ndef atomic_folder", RUN),
    "3a append_line: no fsync only": ("ground/files.py", "    fh.flush()\n    os.fsync(fh.fileno())\n\n\n@contextmanager\ndef atomic_folder",
                                      "    fh.flush()\n\n\n@contextmanager\ndef atomic_folder", RUN),
    "3b append_line: no flush only": ("ground/files.py", "    fh.flush()\n    os.fsync(fh.fileno())\n\n\n@contextmanager\ndef atomic_folder",
                                      "    os.fsync(fh.fileno())\n\n\n@contextmanager\ndef atomic_folder", RUN),
    "4 output lock a no-op": ("kgen/run.py", "fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass", RUN + CLI),
    "5 408 not retried": ("kgen/teachers/openai_backend.py", "frozenset({408, 429})", "frozenset({429})", OPENAI),
    "6 reparse truncated->ok": ("kgen/run.py", 'keep = None if row[R.STATUS] in ("ok", "parse_error") else',
                                'keep = None if row[R.STATUS] in ("ok", "parse_error", "truncated") else',
                                RUN + CLI + ["tests/kgen/test_parse.py"]),
    "7 torn-line handling removed": ("kgen/run.py", "        if last and not line.endswith(\"\\n\") and line.startswith('{\"'):\n            return None\n",
                                     "", RUN),
    "x1 unreadable retry-after-ms: no fallback": ("kgen/teachers/openai_backend.py",
                                                  "            pass  # an unreadable value: fall back", "            return None  # planted", OPENAI),
    "x2 retry-after not capped": ("kgen/teachers/openai_backend.py", "return min(retry_after, cap)", "return retry_after", OPENAI),
    "x3 retry-after over-waited (x2)": ("kgen/teachers/openai_backend.py", "return min(retry_after, cap)", "return min(2 * retry_after, cap)", OPENAI),
    "x4 no choices not caught": ("kgen/teachers/openai_backend.py", "    if not response.choices:\n        return Completion(\"\", \"api_error\", error=\"the response held no choices\")\n", "", OPENAI),
    "x5 content None not caught": ("kgen/teachers/openai_backend.py", "    if choice.message.content is None:", "    if False:", OPENAI),
    "x6 reparse drops api_error message": ("kgen/run.py", 'if parsed.error and keep != "api_error":', "if parsed.error:", RUN + CLI),
    "x8 torn line cut inside a character read as bad UTF-8": ("kgen/run.py", "R.read_lines(path, torn_tail=True)", "R.read_lines(path)", RUN),
    "x7 store save version check removed": ("annotate/store.py", "            if current != expected_version:\n                return SaveResult(False, current, True, f\"stored version is",
                                            "            if False:\n                return SaveResult(False, current, True, f\"stored version is",
                                            ["tests/annotate/test_annotate_store.py"]),
}
PY = sys.executable  # the interpreter that runs this script (e.g. .venv/bin/python)
ENV = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def pytest(files: list[str]) -> tuple[str, list[str]]:
    cmd = [PY, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *files]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", done.stdout, re.M)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    return summary, failed


def main(names: list[str]) -> None:
    for name, (path, old, new, files) in PLANTS.items():
        if names and not any(name.startswith(n) for n in names):
            continue
        text = open(path).read()
        assert text.count(old) == 1, (name, text.count(old))
        open(path, "w").write(text.replace(old, new))
        diff = subprocess.run(["git", "diff", "-U0", "--", path], capture_output=True, text=True).stdout
        start = time.time()
        try:
            summary, failed = pytest(files)
        finally:
            subprocess.run(["git", "checkout", "--", path], check=True)
        print(json.dumps({"bug": name, "file": path, "old": old, "new": new, "tests": files, "summary": summary,
                          "failed": failed, "seconds": round(time.time() - start), "diff": diff}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
