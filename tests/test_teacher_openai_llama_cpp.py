"""The openai teacher against llama-cpp-python's own server (a server nobody here wrote), when it is installed.

Opt-in: skipped unless `llama_cpp` imports (pip install 'llama-cpp-python[server]'; it builds from source).
The full check with the real teacher prompts is bench/check_llama_cpp_server.py.
"""

from __future__ import annotations

import importlib.util

import pytest

from kgen.answer_schema import answer_schema
from kgen.teachers.base import GenerationSettings
from kgen.teachers.openai_backend import OpenAITeacher

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python[server]"),
]


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory):
    from bench.check_llama_cpp_server import free_port, start_server, stop_server, wait_ready

    from kgen.models import embedded_gguf_path

    port, log = free_port(), tmp_path_factory.mktemp("llama-cpp") / "server.log"
    server = start_server(embedded_gguf_path(), port, log, [])
    try:
        wait_ready(server, f"http://127.0.0.1:{port}/v1", log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_server(server)


def test_structured_answers_negotiate_json_object_with_schema_and_none_is_lost(llama_cpp_server):
    names = ["Red Enamel Mug", "Blue Paper Parasol", "Set of 3 Cake Tins"]
    prompts = [[{"role": "system", "content": "Answer in JSON: the product's explicit and implicit aspects."},
                {"role": "user", "content": f"Product Name: {name}"}] for name in names]
    teacher = OpenAITeacher("smollm2", base_url=llama_cpp_server, api_key="EMPTY")  # default concurrency: 16
    settings = GenerationSettings(max_new_tokens=96, answer_format="json")
    got = dict(teacher.complete(prompts, settings, [answer_schema() for _ in names]))
    assert sorted(got) == [0, 1, 2]
    assert {c.status for c in got.values()} <= {"ok", "truncated"}, [c.error for c in got.values()]
    assert teacher.structured_form == "json_object"
    assert "refused response_format json_schema (HTTP 500: " in teacher.notes[0]
