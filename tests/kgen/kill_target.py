"""Run a slow fake generation into argv[1] (argv[2] tasks); the SIGKILL and lock tests kill this process mid-run.

Options: `--delay S` seconds per answer (default 0.05); `--name N` names the inputs `N-i` (default "name");
`--tear-at K` writes rows 0..K-1 with the real `append_line`, then only about the first half of row K straight
to the file descriptor, and SIGKILLs itself: the state a kill that lands inside the write of a row leaves
behind. A row holding multi-byte characters is cut inside one, as a kill at a page boundary can.
"""

import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fake_teacher import FakeTeacher, task  # noqa: E402

from ground.files import dumps  # noqa: E402
from kgen import run  # noqa: E402
from kgen.run import generate_records  # noqa: E402
from kgen.teachers.base import GenerationSettings  # noqa: E402


def tear_at(k: int) -> None:
    """Make the k-th appended row (0-based) a torn line and die there, as a SIGKILL mid-write would."""
    real, written = run.append_line, []

    def append_line(fh, row: dict) -> None:
        if len(written) < k:
            written.append(row)
            real(fh, row)
            return
        line = (dumps(row) + "\n").encode()
        half = len(line) // 2
        cut = next((j for j in range(half, len(line)) if 0x80 <= line[j] < 0xC0), half)  # inside a character
        os.write(fh.fileno(), line[:cut])  # past Python's buffer: only what append_line flushed is before it
        os.kill(os.getpid(), signal.SIGKILL)

    run.append_line = append_line


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("output", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--tear-at", type=int)
    parser.add_argument("--name", default="name")
    args = parser.parse_args()
    if args.tear_at is not None:
        tear_at(args.tear_at)
    tasks = [task(i, name=args.name) for i in range(args.n)]
    generate_records(tasks, FakeTeacher(delay=args.delay), GenerationSettings(answer_format="text"), args.output)
