"""The openai teacher against a real HTTP server on 127.0.0.1 that scripts faults (tests/fake_openai_server.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

import pytest

from fake_openai_server import OK, FakeOpenAIServer, Reply, answer_text
from kgen.teachers.base import GenerationSettings
from kgen.teachers.openai_backend import (
    PLACEHOLDER_KEY,
    OpenAITeacher,
    parse_retry_after,
    resolve_api_key,
    retry_delay,
)

SETTINGS = GenerationSettings(max_new_tokens=64, temperature=0.7, top_p=0.9, seed=11, answer_format="text")


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You describe products."}, {"role": "user", "content": content}]


def make_teacher(server: FakeOpenAIServer, **overrides) -> OpenAITeacher:
    """A teacher with short timeouts and backoffs, so fault tests stay fast."""
    options = dict(api_key="sk-test", timeout=2.0, max_retries=3, backoff_base=0.01, backoff_max=0.5, concurrency=4)
    return OpenAITeacher("fake-model", base_url=server.base_url, **{**options, **overrides})


def run_all(teacher: OpenAITeacher, contents: list[str]) -> dict:
    """Every (index -> Completion), checking that each index came exactly once."""
    pairs = list(teacher.complete([user(c) for c in contents], SETTINGS))
    indices = [i for i, _ in pairs]
    assert sorted(indices) == list(range(len(contents))), f"lost or duplicated answers: {sorted(indices)}"
    return dict(pairs)


def teacher_threads() -> set[threading.Thread]:
    """Threads the backend may start: its loop thread and the loop's executor (not the fake server's)."""
    return {t for t in threading.enumerate() if t.name.startswith(("kgen-openai", "asyncio_"))}


# ---- pure helpers ----------------------------------------------------------------------------------------------


def test_retry_delay_uses_full_jitter_under_the_cap():
    assert retry_delay(0, None, base=0.5, cap=30, u=0.0) == 0.0
    assert retry_delay(3, None, base=0.5, cap=30, u=1.0) == 4.0  # 0.5 * 2**3
    assert retry_delay(3, None, base=0.5, cap=30, u=0.25) == 1.0
    assert retry_delay(10, None, base=0.5, cap=30, u=1.0) == 30  # 512 s capped
    delays = {retry_delay(2, None, base=1.0, cap=30) for _ in range(50)}
    assert all(0 <= d <= 4 for d in delays) and len(delays) > 1


def test_retry_delay_prefers_the_servers_retry_after_capped():
    assert retry_delay(0, 2.5, base=0.5, cap=30, u=0.0) == 2.5
    assert retry_delay(0, 120.0, base=0.5, cap=30, u=0.0) == 30


def test_parse_retry_after_reads_ms_seconds_and_http_dates():
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    now = 1_700_000_000.0  # 2023-11-14 22:13:20 GMT
    assert parse_retry_after({"retry-after": "Tue, 14 Nov 2023 22:13:25 GMT"}, now=now) == 5.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0  # unreadable ms: the other header
    assert parse_retry_after({"retry-after-ms": "soon"}) is None


def test_resolve_api_key_uses_a_placeholder_only_for_servers_other_than_openai(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert resolve_api_key("sk-given", None) == "sk-given"
    assert resolve_api_key(None, "http://127.0.0.1:8000/v1") == PLACEHOLDER_KEY
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        resolve_api_key(None, None)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        resolve_api_key(None, "https://api.openai.com/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert resolve_api_key(None, None) == "sk-env"


@pytest.mark.parametrize(
    "option, value", [("concurrency", 0), ("max_retries", -1), ("timeout", 0), ("backoff_max", 0.1)]
)
def test_bad_settings_are_rejected_naming_the_value(option, value):
    with pytest.raises(ValueError, match=f"{option} must be .*{value}"):
        OpenAITeacher("m", base_url="http://127.0.0.1:1/v1", api_key="k", backoff_base=0.5, **{option: value})


# ---- over HTTP ---------------------------------------------------------------------------------------------------


def test_answers_carry_text_usage_and_the_request_carries_the_settings():
    with FakeOpenAIServer() as server:
        teacher = make_teacher(server)
        answers = run_all(teacher, ["COSTA coffee beans 200g", "red mug"])
    assert teacher.model == "openai:fake-model"
    for i, content in enumerate(["COSTA coffee beans 200g", "red mug"]):
        assert answers[i].status == "ok" and answers[i].error is None
        assert answers[i].text == answer_text(content)
        assert answers[i].prompt_tokens == 3 + len(content.split())  # the server counts words of every message
        assert answers[i].completion_tokens == len(answer_text(content).split())
    call = server.calls_for("red mug")[0]
    assert call.body["model"] == "fake-model"
    assert call.body["messages"] == user("red mug")
    sent = {name: call.body[name] for name in ("temperature", "top_p", "max_tokens", "seed")}
    assert sent == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "seed": 11}
    assert call.headers["authorization"] == "Bearer sk-test"


def test_no_prompts_yield_nothing():
    with FakeOpenAIServer() as server:
        assert list(make_teacher(server).complete([], SETTINGS)) == []
    assert server.calls == []


def test_a_local_server_without_any_key_gets_the_placeholder(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)  # the client reads it when base_url is None
        teacher = OpenAITeacher("fake-model", timeout=2.0)
        answers = dict(teacher.complete([user("hello")], SETTINGS))
    assert answers[0].status == "ok"
    assert server.calls[0].headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}"


@pytest.mark.parametrize(
    "replies",
    [
        [Reply(429, {"retry-after": "0.05"}), OK],
        [Reply(500), Reply(503), OK],
        [Reply(502), Reply(429), Reply(504), OK],
        [Reply(408), OK],
    ],
    ids=["429", "500-503", "502-429-504", "408"],
)
def test_transient_faults_are_retried_until_the_answer_comes(replies):
    with FakeOpenAIServer({"flaky": replies}) as server:
        answers = run_all(make_teacher(server), ["flaky", "steady"])
    assert answers[0].status == "ok" and answers[0].text == answer_text("flaky")
    assert [c.status for c in server.calls_for("flaky")] == [r.status for r in replies]
    assert len(server.calls_for("steady")) == 1


def test_retries_stop_after_max_retries_and_record_the_last_error():
    with FakeOpenAIServer({"down": [Reply(503)]}) as server:
        answers = run_all(make_teacher(server, max_retries=2), ["down", "up"])
    assert answers[0].status == "api_error" and answers[0].text == ""
    assert "503" in answers[0].error and "after 3 attempts" in answers[0].error
    assert len(server.calls_for("down")) == 3
    assert answers[1].status == "ok"


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_recorded_at_once_without_retry(status):
    with FakeOpenAIServer({"bad": [Reply(status)]}) as server:
        answers = run_all(make_teacher(server), ["bad", "good"])
    assert answers[0].status == "api_error"
    assert f"HTTP {status}" in answers[0].error and "scripted failure" in answers[0].error
    assert len(server.calls_for("bad")) == 1
    assert answers[1].status == "ok"


def test_a_timeout_is_retried():
    with FakeOpenAIServer({"slow once": [Reply(delay=4.0), OK]}) as server:
        answers = run_all(make_teacher(server, timeout=1.0), ["slow once"])
    assert answers[0].status == "ok" and answers[0].text == answer_text("slow once")
    assert len(server.calls_for("slow once")) == 2


def test_a_timeout_that_persists_is_recorded():
    with FakeOpenAIServer({"hung": [Reply(delay=4.0)]}) as server:
        answers = run_all(make_teacher(server, timeout=1.0, max_retries=1), ["hung"])
    assert answers[0].status == "api_error" and "timed out" in answers[0].error
    assert len(server.calls_for("hung")) == 2


def test_connection_errors_are_retried_then_recorded():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    teacher = OpenAITeacher("m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=2, backoff_base=0.01)
    answers = dict(teacher.complete([user("anyone there?")], SETTINGS))
    assert answers[0].status == "api_error"
    assert "connection error" in answers[0].error and "after 3 attempts" in answers[0].error


def test_finish_reason_length_is_truncated_with_the_text_kept():
    with FakeOpenAIServer({"long": [Reply(finish_reason="length")]}) as server:
        answers = run_all(make_teacher(server), ["long"])
    assert answers[0].status == "truncated" and answers[0].text == answer_text("long")
    assert answers[0].completion_tokens > 0


SLACK = 0.8  # seconds a loaded machine may add between an answer and the retry it asked for; under any wait


def retry_gap(header: dict[str, str], **overrides) -> float:
    """Seconds between a 429 carrying `header` and its retry, over HTTP (plain backoff: at most 0.001 s)."""
    options = {"backoff_base": 0.001, "backoff_max": 5.0, **overrides}
    with FakeOpenAIServer({"limited": [Reply(429, header), OK]}) as server:
        answers = run_all(make_teacher(server, **options), ["limited"])
    first, retry = server.calls_for("limited")
    assert answers[0].status == "ok"
    return retry.started - first.started


@pytest.mark.parametrize("header", [{"retry-after": "1.0"}, {"retry-after-ms": "1000"}])
def test_retry_after_is_honoured_neither_less_nor_more(header):
    """The server asked for 1 s: not the 0.001 s of plain backoff, and not twice or a thousand times that."""
    assert 1.0 <= retry_gap(header) < 1.0 + SLACK


def test_an_unreadable_retry_after_ms_falls_back_to_retry_after():
    assert 0.5 <= retry_gap({"retry-after-ms": "soon", "retry-after": "0.5"}) < 0.5 + SLACK


def test_a_retry_after_above_the_cap_waits_the_cap():
    assert 0.5 <= retry_gap({"retry-after": "60"}, backoff_max=0.5) < 0.5 + SLACK


@pytest.mark.parametrize(
    "shape, error", [("no_choices", "held no choices"), ("null_content", "no text in the answer")], ids=["no_choices", "null_content"]
)
def test_an_answer_without_text_is_an_api_error(shape, error):
    with FakeOpenAIServer({"odd": [Reply(shape=shape)]}) as server:
        answers = run_all(make_teacher(server), ["odd", "fine"])
    assert answers[0].status == "api_error" and answers[0].text == "" and error in answers[0].error
    assert answers[1].status == "ok" and answers[1].text == answer_text("fine")


def test_concurrency_never_exceeds_the_bound():
    contents = [f"item {i}" for i in range(12)]
    script = {c: [Reply(delay=0.15)] for c in contents}
    script["item 0"] = [Reply(503), Reply(delay=0.15)]  # a retry must not sneak past the bound
    with FakeOpenAIServer(script) as server:
        answers = run_all(make_teacher(server, concurrency=3), contents)
    assert all(a.status == "ok" for a in answers.values())
    assert 2 <= server.max_in_flight <= 3  # requests did overlap, and never more than 3 at once


def test_answers_are_yielded_as_they_finish():
    contents = ["slow", "fast 1", "fast 2", "fast 3", "fast 4"]
    with FakeOpenAIServer({"slow": [Reply(delay=1.0)]}) as server:
        order = [i for i, _ in make_teacher(server, concurrency=5).complete([user(c) for c in contents], SETTINGS)]
    assert sorted(order) == [0, 1, 2, 3, 4]
    assert order[-1] == 0  # the slow prompt came first but did not hold back the fast ones


def test_stopping_early_cancels_requests_in_flight_and_leaves_no_thread():
    contents = [f"item {i}" for i in range(10)]
    before = teacher_threads()
    with FakeOpenAIServer({c: [Reply(delay=0.3)] for c in contents}) as server:
        answers = make_teacher(server, concurrency=2).complete([user(c) for c in contents], SETTINGS)
        index, first = next(answers)
        answers.close()
        assert teacher_threads() <= before
        calls_at_close = len(server.calls)
        time.sleep(0.5)  # were anything still running, it would send more requests by now
        assert len(server.calls) == calls_at_close < len(contents)
    assert first.status == "ok"


def test_an_error_in_the_consumer_leaves_no_thread():
    before = teacher_threads()
    with FakeOpenAIServer({"item 1": [Reply(delay=0.5)]}) as server:
        teacher = make_teacher(server)
        with pytest.raises(RuntimeError, match="disk full"):
            for _ in teacher.complete([user("item 0"), user("item 1")], SETTINGS):
                raise RuntimeError("disk full")
    assert teacher_threads() <= before


def test_fifty_prompts_with_mixed_faults_lose_nothing():
    faults = {
        0: ([OK], "ok"),
        1: ([Reply(429, {"retry-after": "0.05"}), OK], "ok"),
        2: ([Reply(500), Reply(503), OK], "ok"),
        3: ([Reply(finish_reason="length")], "truncated"),
        4: ([Reply(400)], "api_error"),
        5: ([Reply(503)], "api_error"),  # never recovers: 1 + max_retries calls
        6: ([Reply(delay=5.0), OK], "ok"),  # a timeout, then an answer
    }
    contents = [f"product {i}" for i in range(50)]
    with FakeOpenAIServer({c: faults[i % 7][0] for i, c in enumerate(contents)}) as server:
        answers = run_all(make_teacher(server, concurrency=8, max_retries=2, timeout=1.5), contents)
    for i, content in enumerate(contents):
        replies, expected = faults[i % 7]
        assert answers[i].status == expected, (i, answers[i])
        if expected != "api_error":
            assert answers[i].text == answer_text(content)
        calls = {4: 1, 5: 3}.get(i % 7, len(replies))
        assert len(server.calls_for(content)) == calls, (i, content)
    assert Counter(a.status for a in answers.values()) == {"ok": 29, "truncated": 7, "api_error": 14}


def test_a_bug_inside_the_backend_is_raised_not_hung_on(monkeypatch):
    import kgen.teachers.openai_backend as backend

    def broken(response):
        raise KeyError("a mapping bug")

    monkeypatch.setattr(backend, "completion_from_response", broken)
    before = teacher_threads()
    with FakeOpenAIServer() as server:
        with pytest.raises(KeyError, match="a mapping bug"):
            list(make_teacher(server).complete([user("a"), user("b")], SETTINGS))
    assert teacher_threads() <= before


JSON_SETTINGS = GenerationSettings(max_new_tokens=64, answer_format="json")


def test_structured_answers_send_the_answer_schema_and_parse():
    from kgen.answer_schema import answer_schema
    from kgen.parse import parse_answer

    with FakeOpenAIServer() as server:
        teacher = make_teacher(server)
        got = run_all_with(teacher, ["mug"], JSON_SETTINGS)
        fmt = server.calls[0].body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == answer_schema()
    assert got["mug"].status == "ok" and parse_answer(got["mug"].text).key_phrases == ["mug"]
    assert teacher.notes == ["structured output: response_format json_schema"]


def test_each_request_sends_its_own_schema():
    from kgen.answer_schema import answer_schema

    schemas = {c: answer_schema([c, f"{c} x"]) for c in ("mug", "cup", "jar")}
    with FakeOpenAIServer() as server:
        contents = list(schemas)
        dict(make_teacher(server).complete([user(c) for c in contents], JSON_SETTINGS, list(schemas.values())))
        sent = {c.body["messages"][-1]["content"]: c.body["response_format"]["json_schema"]["schema"] for c in server.calls}
    assert sent == schemas


def test_a_server_that_rejects_every_schema_is_asked_with_the_prompt_only_and_the_run_says_so():
    with FakeOpenAIServer(refuse_schema=True) as server:
        teacher = make_teacher(server, concurrency=1, max_retries=0)
        got = run_all_with(teacher, ["mug", "cup"], JSON_SETTINGS)
        sent = [form_sent(c) for c in server.calls]
    assert {c.status for c in got.values()} == {"ok"}  # nothing lost, no retry budget spent
    assert sent == ["json_schema", "json_object", None, None]  # each form refused once, then never sent again
    assert len(teacher.notes) == 1 and teacher.notes[0].startswith("structured output: no response_format")
    assert "refused response_format json_schema (HTTP 400" in teacher.notes[0]


def test_a_text_run_never_sends_a_response_format():
    with FakeOpenAIServer() as server:
        run_all_with(make_teacher(server), ["mug"], GenerationSettings(max_new_tokens=8, answer_format="text"))
        assert "response_format" not in server.calls[0].body


def test_a_repetition_penalty_is_refused_before_any_request():
    with FakeOpenAIServer() as server:
        with pytest.raises(ValueError, match="repetition_penalty is not a parameter of the OpenAI chat API"):
            run_all_with(make_teacher(server), ["mug"], GenerationSettings(max_new_tokens=8, answer_format="text", repetition_penalty=1.2))
        assert server.calls == []


def run_all_with(teacher: OpenAITeacher, contents: list[str], settings: GenerationSettings) -> dict:
    return {contents[i]: c for i, c in teacher.complete([user(c) for c in contents], settings)}


def form_sent(call) -> str | None:
    """The structured form a request asked for: json_schema, json_object (with its schema) or None."""
    fmt = call.body.get("response_format")
    return fmt and fmt["type"]


# ---- structured forms per server: negotiated once per run ------------------------------------------------------


def test_llama_cpp_pythons_server_is_asked_in_json_object_with_schema_after_one_refusal():
    """Its server answers json_schema with HTTP 500 (a pydantic literal_error); the run must not take that for a fault."""
    from kgen.answer_schema import answer_schema
    from kgen.parse import parse_answer

    contents = [f"item {i}" for i in range(20)]
    schemas = [answer_schema([c]) for c in contents]
    with FakeOpenAIServer(structured="llama-cpp-python") as server:
        teacher = make_teacher(server, concurrency=16, max_retries=0)  # a refusal must never need the retry budget
        got = dict(teacher.complete([user(c) for c in contents], JSON_SETTINGS, schemas))
        calls = list(server.calls)
    assert {i: (c.status, c.error) for i, c in got.items()} == {i: ("ok", None) for i in range(20)}
    assert all(parse_answer(got[i].text).key_phrases == [c] for i, c in enumerate(contents))
    assert len(calls) == 21  # one request more than the prompts: the refused json_schema, and only one of those
    assert [form_sent(c) for c in calls].count("json_schema") == 1 and calls[0].status == 500
    for call in calls[1:]:  # every other request: json_object with that prompt's own schema
        assert call.body["response_format"] == {"type": "json_object", "schema": schemas[contents.index(call.content)]}
    note, = teacher.notes
    assert note.startswith("structured output: response_format json_object with schema; the server refused "
                           "response_format json_schema (HTTP 500: ")
    assert "literal_error" in note


def test_the_form_is_remembered_for_the_run_not_negotiated_again():
    with FakeOpenAIServer(structured="llama-cpp-python") as server:
        teacher = make_teacher(server, concurrency=4)
        run_all_with(teacher, ["mug", "cup"], JSON_SETTINGS)
        run_all_with(teacher, ["jar", "pot"], JSON_SETTINGS)  # a second batch of the same run (as Ray sends them)
        sent = [form_sent(c) for c in server.calls]
    assert sent == ["json_schema", "json_object", "json_object", "json_object", "json_object"]
    assert teacher.structured_form == "json_object" and len(teacher.notes) == 1


def test_a_transient_500_is_still_retried_also_while_negotiating():
    """A 500 whose body does not name the schema is a fault: retried with backoff, never a refusal."""
    contents = [f"item {i}" for i in range(6)]
    script = {"item 0": [Reply(503), OK], "item 4": [Reply(500), Reply(500), OK]}
    with FakeOpenAIServer(script, structured="llama-cpp-python") as server:
        teacher = make_teacher(server, concurrency=16, max_retries=2)
        got = run_all_with(teacher, contents, JSON_SETTINGS)
        calls = list(server.calls)
    assert {c.status for c in got.values()} == {"ok"}
    assert len(calls) == 6 + 1 + 3  # the prompts, one refusal, three transient faults
    # item 0's 503 told nothing about the form: the next request asked again, and was refused
    assert [c.status for c in calls if form_sent(c) == "json_schema"] == [503, 500]
    assert [c.status for c in server.calls_for("item 4")] == [500, 500, 200]
    assert teacher.structured_form == "json_object"


def test_a_transient_500_past_max_retries_is_an_api_error_not_a_refusal():
    with FakeOpenAIServer({"down": [Reply(500)]}, structured="llama-cpp-python") as server:
        teacher = make_teacher(server, concurrency=1, max_retries=1)
        got = run_all_with(teacher, ["up", "down"], JSON_SETTINGS)
    assert got["up"].status == "ok" and got["down"].status == "api_error"
    assert "HTTP 500: " in got["down"].error and "after 2 attempts" in got["down"].error
    assert [form_sent(c) for c in server.calls_for("down")] == ["json_object", "json_object"]


def test_a_refusal_of_one_requests_own_schema_after_agreement_steps_down_for_that_request_only():
    from fake_openai_server import SCHEMA_REFUSED

    contents = ["mug", "cup", "odd", "jar"]
    with FakeOpenAIServer({"odd": [SCHEMA_REFUSED, OK]}) as server:
        teacher = make_teacher(server, concurrency=1, max_retries=0)
        got = run_all_with(teacher, contents, JSON_SETTINGS)
        sent = {c: [form_sent(call) for call in server.calls_for(c)] for c in contents}
    assert {c.status for c in got.values()} == {"ok"}
    assert sent == {"mug": ["json_schema"], "cup": ["json_schema"], "odd": ["json_schema", "json_object"],
                    "jar": ["json_schema"]}
    assert teacher.structured_form == "json_schema"
    assert teacher.notes[1].startswith("1 requests whose schema the server refused")


def run_records(teacher: OpenAITeacher, names: list[str], out) -> list[dict]:
    """A whole structured item run through kgen.run (records parsed as a run parses them), in input order."""
    from ground.records import read_records
    from kgen.run import generate_records

    tasks = [{"id": f"x{i}", "level": "item", "input": name, "template": "item", "reference_id": None,
              "messages": user(f"Product Name: {name}")} for i, name in enumerate(names)]
    generate_records(tasks, teacher, JSON_SETTINGS, out)
    rows = {row["id"]: row for row in read_records(out, "knowledge")}
    return [rows[f"x{i}"] for i in range(len(names))]


BROKEN_JSON = '{"explicit": [{"aspect": "Type", "value": "Red'  # what a model cut short writes


def test_a_run_on_llama_cpp_pythons_server_ends_with_every_row_ok(tmp_path):
    names = [f"Red Mug {i}" for i in range(12)]
    with FakeOpenAIServer(structured="llama-cpp-python") as server:
        teacher = make_teacher(server, concurrency=16)
        rows = run_records(teacher, names, tmp_path / "k.jsonl")
        calls = len(server.calls)
    assert [row["status"] for row in rows] == ["ok"] * 12
    assert [row["key_phrases"] for row in rows] == [[name] for name in names]  # each row its own JSON answer
    assert calls == 13 and "json_object with schema" in teacher.notes[0]


def test_a_run_on_a_server_that_ignores_response_format_ends_with_each_rows_parse_status(tmp_path):
    """json_schema is accepted (nothing to negotiate), the model writes what it likes: each row is parsed as it is."""
    script = {"Product Name: Red Mug 1": [Reply(text=BROKEN_JSON)],
              "Product Name: Red Mug 2": [Reply(text="Explicit Information:\nColour: Red. Named.\nKey Features: red mug")]}
    names = [f"Red Mug {i}" for i in range(6)]
    with FakeOpenAIServer(script, structured="ignores") as server:
        teacher = make_teacher(server, concurrency=16)
        rows = run_records(teacher, names, tmp_path / "k.jsonl")
        calls = list(server.calls)
    assert [row["status"] for row in rows] == ["ok", "parse_error", "ok", "ok", "ok", "ok"]
    assert "not complete JSON" in rows[1]["error"] and rows[1]["raw"] == BROKEN_JSON
    assert rows[2]["key_phrases"] == ["red mug"]
    assert len(calls) == 6 and {form_sent(c) for c in calls} == {"json_schema"}
    assert teacher.notes == ["structured output: response_format json_schema"]


# ---- a single-slot server: queueing is not a fault ----------------------------------------------------------------


def test_a_single_slot_server_loses_no_row_to_client_timeouts_from_its_queue():
    """16 in flight, one served at a time for 0.15 s: the last would wait 2.4 s against a 0.6 s timeout."""
    contents = [f"item {i}" for i in range(16)]
    with FakeOpenAIServer(slots=1, service=0.15) as server:
        teacher = make_teacher(server, concurrency=16, timeout=0.6, max_retries=0)  # queueing: never a retry spent
        got = run_all(teacher, contents)
        served, dropped = list(server.served), server.dropped
    assert {i: got[i].status for i in range(16)} == {i: "ok" for i in range(16)}
    assert all(got[i].text == answer_text(c) for i, c in enumerate(contents))
    assert dropped > 0 and len(served) >= 16  # timeouts did happen: the queued requests of gone clients were dropped
    note, = teacher.notes
    assert note.startswith("client timeouts while the server answered other requests (queueing on the server): "
                           "requests in flight were lowered from 16 to as few as ")


def test_a_lone_request_that_times_out_spends_the_retry_budget():
    """Nothing else was answered while it waited: not queueing, so not free (it would retry forever)."""
    with FakeOpenAIServer(slots=1, service=0.0, script={"hung": [Reply(delay=2.0)]}) as server:
        got = run_all(make_teacher(server, concurrency=16, timeout=0.5, max_retries=1), ["hung"])
        calls = len(server.calls)
    assert got[0].status == "api_error" and "timed out" in got[0].error and calls == 2


def test_the_default_timeout_follows_max_new_tokens(monkeypatch):
    import kgen.teachers.openai_backend as backend

    assert backend.default_timeout(3091) > backend.default_timeout(384) >= 60  # the json and text defaults
    monkeypatch.setattr(backend, "TIMEOUT_BASE_S", 0.3)
    monkeypatch.setattr(backend, "SLOWEST_TOKENS_PER_S", 100.0)  # 0.3 s + 1 s per 100 tokens
    script = {"slow": [Reply(delay=0.8)]}
    with FakeOpenAIServer(script) as server:
        teacher = make_teacher(server, timeout=None, max_retries=0)
        long = dict(teacher.complete([user("slow")], GenerationSettings(max_new_tokens=100)))  # 1.3 s allowed
        short = dict(teacher.complete([user("slow")], GenerationSettings(max_new_tokens=10)))  # 0.4 s allowed
    assert long[0].status == "ok"
    assert short[0].status == "api_error" and "timed out" in short[0].error


def test_a_queueing_timeout_lowers_the_gate_to_one_less_than_the_answers_meanwhile():
    from kgen.teachers.openai_backend import Gate

    gate = Gate(16)
    gate.lower(200)  # a hung request on a server that answered 200 others meanwhile: no queue worth the name
    assert gate.limit == 16
    gate.lower(4)  # 4 answers within a timeout (one perhaps begun before): 3 may wait without timing out
    assert gate.limit == 3
    gate.lower(9)  # a timeout never raises the limit
    assert gate.limit == 3
    gate.lower(1)
    assert (gate.limit, gate.lowest) == (1, 1)


def test_the_gate_grows_back_one_at_a_time_after_windows_of_answers_never_past_the_concurrency():
    from kgen.teachers.openai_backend import GROWTH_WINDOWS, Gate

    gate = Gate(3)
    gate.lower(2)
    limits = []
    for _ in range(GROWTH_WINDOWS * 20):
        gate._grow()
        limits.append(gate.limit)
    assert limits.index(2) == GROWTH_WINDOWS - 1  # after one window of answers at limit 1
    assert limits.index(3) == GROWTH_WINDOWS * 3 - 1  # then two windows' worth at limit 2
    assert max(limits) == 3 and gate.lowest == 1
