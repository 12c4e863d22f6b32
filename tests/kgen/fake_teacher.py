"""A deterministic in-process teacher for logic tests (no model, no network)."""

from __future__ import annotations

import time

from kgen.teachers.base import Completion

ANSWER = """Explicit Information:
Type: {name}. The name states it.
Implicit Information:
Occasion: Gift. Small home goods are common gifts.
Key Features: {name}, Gift"""


class FakeTeacher:
    """Answers from the last user message; scripted failures and delays by input text."""

    def __init__(self, fail_on: set[str] = frozenset(), delay: float = 0.0, model: str = "fake:teacher"):
        self.model, self.fail_on, self.delay, self.calls = model, set(fail_on), delay, 0

    def complete(self, prompts, settings, schemas=None):
        for i, messages in enumerate(prompts):
            self.calls += 1
            time.sleep(self.delay)
            name = messages[-1]["content"].rsplit(":", 1)[-1].strip()
            if name in self.fail_on:
                yield i, Completion("", "api_error", error="HTTP 500: scripted")
            else:
                yield i, Completion(ANSWER.format(name=name), "ok", 10, 20)

    def close(self) -> None:
        pass


def task(i: int, level: str = "item", name: str = "name") -> dict:
    """A minimal generation task whose answer names `{name}-i`."""
    return {"id": f"x{i}", "level": level, "input": f"{name}-{i}", "template": "item", "reference_id": "pool-1",
            "messages": [{"role": "user", "content": f"Product Name: {name}-{i}"}]}


class CrashOnceTeacher(FakeTeacher):
    """Kills its own process on its first batch, once per marker file: a worker dying mid-run."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def complete(self, prompts, settings, schemas=None):
        import os

        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)  # no cleanup, no exception: what an OOM kill or a segfault looks like
        yield from super().complete(prompts, settings)


class LoggingTeacher(FakeTeacher):
    """Appends the input of every prompt it answers to a log file (shared by all workers of a run)."""

    def __init__(self, log: str):
        super().__init__()
        self.log = log

    def complete(self, prompts, settings, schemas=None):
        with open(self.log, "a") as fh:
            for messages in prompts:
                fh.write(messages[-1]["content"].rsplit(":", 1)[-1].strip() + "\n")
        yield from super().complete(prompts, settings)
