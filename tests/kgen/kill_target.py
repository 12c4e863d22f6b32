"""Run a slow fake generation into argv[1]; the SIGKILL test kills this process mid-run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fake_teacher import FakeTeacher, task  # noqa: E402

from kgen.run import generate_records  # noqa: E402
from kgen.teachers.base import GenerationSettings  # noqa: E402

if __name__ == "__main__":
    n = int(sys.argv[2])
    generate_records([task(i) for i in range(n)], FakeTeacher(delay=0.05), GenerationSettings(), Path(sys.argv[1]))
