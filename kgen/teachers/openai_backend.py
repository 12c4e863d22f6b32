"""Teacher for any OpenAI-compatible chat endpoint: OpenAI itself, `vllm serve`, llama.cpp's server, Ollama.

The base URL and key come from the arguments or from OPENAI_BASE_URL / OPENAI_API_KEY. With no key anywhere and a
base URL other than OpenAI's own, the placeholder key "EMPTY" is sent: self-hosted servers usually run without
auth, and one that does want a key answers 401, which is recorded at once (never retried).

Requests run concurrently (at most `concurrency` in flight) on an event loop in a background thread; `complete`
yields each answer as soon as it arrives. Retries live here, at the network boundary: 408, 429, 5xx, connection
errors and timeouts are retried with exponential backoff and full jitter, honouring `retry-after-ms` /
`retry-after`; any other status is recorded as an api_error for that prompt straight away.

Structured answers: servers take a schema in different forms, so the first request of a run negotiates one
(STRUCTURED_FORMS, in order) while the others wait; a refusal (a 4xx/5xx naming the schema) costs that one
request, never the retry budget, and the form found is kept for the teacher's life (one run) and written to
its notes.

Queueing: a single-slot server (llama-cpp-python, a small llama.cpp) answers one request at a time, so with
16 in flight the last waits for 15 others and a client timeout counts that wait. The timeout therefore follows
`max_new_tokens` (what one answer may take on a slow server), and a timeout while the server answered other
requests is queueing, not a fault: it is retried without spending the retry budget, and the number in flight
drops to one less than the answers the server gave during that wait (what it gets through within a timeout);
it grows again by one after every GROWTH_WINDOWS windows of answers.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import openai

from ground.errors import ConfigError
from kgen.teachers.base import Completion, GenerationSettings, Messages, prompt_schema

PLACEHOLDER_KEY = "EMPTY"
OPENAI_HOST = "api.openai.com"
_RETRY_STATUSES = frozenset({408, 429})  # and every 5xx
# The forms of structured output, tried in this order: `json_schema` (OpenAI, vLLM, llama.cpp's llama-server),
# `json_object` with a `schema` (llama-cpp-python's server, some others), then no response_format at all: the
# answer follows the JSON prompt only and is parsed as JSON or text.
JSON_SCHEMA, JSON_OBJECT, PROMPT_ONLY = "json_schema", "json_object", "prompt"
STRUCTURED_FORMS = (JSON_SCHEMA, JSON_OBJECT, PROMPT_ONLY)
FORM_NAMES = {JSON_SCHEMA: "response_format json_schema", JSON_OBJECT: "response_format json_object with schema",
              PROMPT_ONLY: "no response_format (the JSON prompt only)"}
# The request timeout when none is given: a fixed part (connection, prompt processing) plus the time a slow
# server takes for `max_new_tokens` tokens of one answer. Waiting in the server's queue is the gate's business.
TIMEOUT_BASE_S = 60.0
SLOWEST_TOKENS_PER_S = 10.0
QUEUE_RETRIES = 8  # timeouts taken for queueing that one prompt may retry without spending max_retries
GROWTH_WINDOWS = 4  # after a queueing timeout: one more in flight after this many windows of answers


def default_timeout(max_new_tokens: int) -> float:
    """Seconds one request may take when the teacher was given no timeout: enough for a whole answer at 10 tok/s."""
    return TIMEOUT_BASE_S + max_new_tokens / SLOWEST_TOKENS_PER_S


class OpenAITeacher:
    """Chat completions over HTTP with bounded concurrency and retries; one failed prompt never stops the rest."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 16,
        max_retries: int = 5,
        timeout: float | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ):
        _check_settings(concurrency, max_retries, timeout, backoff_base, backoff_max)
        self.model = f"openai:{model}"
        self.api_model = model
        self.base_url = base_url  # None: the client reads OPENAI_BASE_URL, else OpenAI's own
        self.api_key = resolve_api_key(api_key, base_url)
        self.concurrency, self.max_retries = concurrency, max_retries
        self.timeout = timeout  # None: default_timeout(max_new_tokens) of each run
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.structured_form: str | None = None  # negotiated by the first structured request, then kept
        self.refused: dict[str, str] = {}  # form -> the server's refusal, while negotiating
        self.stepped_down = 0  # requests whose own schema the server refused after the form was agreed
        self.lowest_window = concurrency  # the fewest requests the gate let in flight (queueing timeouts)

    @property
    def notes(self) -> list[str]:
        """What the run JSON should say about this teacher's run: the structured form, any queueing."""
        notes = []
        if self.structured_form:
            notes.append(form_note(self.structured_form, self.refused))
        if self.stepped_down:
            notes.append(f"{self.stepped_down} requests whose schema the server refused under "
                         f"{FORM_NAMES[self.structured_form]} were asked again in the next form")
        if self.lowest_window < self.concurrency:
            notes.append(f"client timeouts while the server answered other requests (queueing on the server): "
                         f"requests in flight were lowered from {self.concurrency} to as few as {self.lowest_window}")
        return notes

    def complete(self, prompts: Sequence[Messages], settings: GenerationSettings,
                 schemas: Sequence[dict] | None = None) -> Iterator[tuple[int, Completion]]:
        """Yield (index, answer) as each request finishes; stopping early cancels the requests still in flight.

        Structured answers send each request its own schema (from `schemas`, if given) in the negotiated form.
        """
        check_settings(settings)
        if not prompts:
            return
        results: queue.SimpleQueue = queue.SimpleQueue()
        loop = asyncio.new_event_loop()
        request_schemas = [prompt_schema(schemas, i) for i in range(len(prompts))] if settings.structured else None
        main = loop.create_task(self._answer_all(list(prompts), request_schemas, settings, results.put))
        worker = threading.Thread(
            target=_drive, args=(loop, main, results.put), name="kgen-openai-teacher", daemon=True
        )
        worker.start()
        try:
            for _ in range(len(prompts)):
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The loop is closed only below, so this is safe even when `main` has already finished (then a no-op).
            loop.call_soon_threadsafe(main.cancel)
            worker.join()
            loop.close()

    def close(self) -> None:
        """Nothing to release: each `complete` call opens and closes its own HTTP client."""

    async def _answer_all(self, prompts: list[Messages], schemas: list[dict] | None, settings: GenerationSettings,
                          put: Callable) -> None:
        timeout = self.timeout or default_timeout(settings.max_new_tokens)
        # One client per call: an httpx pool belongs to the event loop it was first used on.
        async with openai.AsyncOpenAI(
            api_key=self.api_key, base_url=self.base_url, timeout=timeout, max_retries=0
        ) as client:
            gate = Gate(self.concurrency)
            negotiating = asyncio.Lock()  # held by the one request that finds the structured form

            async def answer(index: int, messages: Messages) -> None:
                request = Request(client, gate, self.api_model, messages, schemas[index] if schemas else None,
                                  settings)
                put((index, await self._answer(request, negotiating)))

            tasks = [asyncio.ensure_future(answer(i, messages)) for i, messages in enumerate(prompts)]
            try:
                await asyncio.gather(*tasks)
            finally:  # cancelled by the consumer, or a bug in one task: leave no task behind
                self.lowest_window = min(self.lowest_window, gate.lowest)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer(self, request: Request, negotiating: asyncio.Lock) -> Completion:
        """One prompt's answer: retries transient faults with backoff; a queueing timeout lowers the gate instead."""
        attempts = queue_retries = 0
        while True:
            attempts += 1
            try:
                return await self._attempt(request, negotiating)
            except openai.APIError as exc:
                if isinstance(exc, QueuedTimeout) and queue_retries < QUEUE_RETRIES:
                    # The server answered others while this one waited: it queues. Fewer in flight, and again.
                    request.gate.lower(exc.answered)
                    queue_retries += 1
                    attempts -= 1
                    continue
                if attempts > self.max_retries or not is_retryable(exc):
                    return Completion("", "api_error", error=describe_error(exc, attempts))
                wait = retry_delay(attempts - 1, retry_after_seconds(exc), self.backoff_base, self.backoff_max)
                await asyncio.sleep(wait)

    async def _attempt(self, request: Request, negotiating: asyncio.Lock) -> Completion:
        """One try: plain for text; structured in the run's form, found first by one request while the rest wait."""
        if not request.settings.structured:
            return await request.send(None)
        if self.structured_form is None:
            async with negotiating:
                if self.structured_form is None:
                    return await self._negotiate(request)
        return await self._send_structured(request)

    async def _negotiate(self, request: Request) -> Completion:
        """Ask in each form the server has not refused yet; the first answer settles the run's form."""
        for form in STRUCTURED_FORMS:
            if form in self.refused:
                continue
            try:
                completion = await request.send(form)
            except openai.APIError as exc:
                if not refuses_schema(exc) or form == PROMPT_ONLY:
                    raise  # a fault of this request, not of the form: the next request negotiates again
                self.refused[form] = one_line(describe_error(exc, 1).removesuffix(" (after 1 attempt)"))
                continue
            self.structured_form = form
            return completion
        raise AssertionError("unreachable: the prompt-only form is never refused")

    async def _send_structured(self, request: Request) -> Completion:
        """Ask in the run's form; a refusal of this request's own schema steps down to the next form, for it alone."""
        forms = STRUCTURED_FORMS[STRUCTURED_FORMS.index(self.structured_form):]
        for form in forms:
            try:
                return await request.send(form)
            except openai.APIError as exc:
                if not refuses_schema(exc) or form == PROMPT_ONLY:
                    raise
                if form == self.structured_form:
                    self.stepped_down += 1
        raise AssertionError("unreachable: the prompt-only form is never refused")


@dataclass(frozen=True)
class Request:
    """One prompt of a `complete` call and what sending it needs."""

    client: openai.AsyncOpenAI
    gate: Gate
    model: str  # as the API names it
    messages: Messages
    schema: dict | None
    settings: GenerationSettings

    async def send(self, form: str | None) -> Completion:
        """One HTTP request (in structured form `form`, if any), holding a place in the gate while it is in flight."""
        fmt = None if form in (None, PROMPT_ONLY) else response_format(self.schema, form)
        async with self.gate:
            before = self.gate.answered
            try:
                response = await self.client.chat.completions.create(
                    **chat_request(self.model, self.messages, self.settings, fmt)
                )
            except openai.APITimeoutError as exc:
                if self.gate.answered > before:  # others were answered while this one waited: queued
                    raise QueuedTimeout(exc.request, self.gate.answered - before) from exc
                raise
            except openai.APIStatusError:
                self.gate.answered += 1  # the server is alive and answering
                raise
            self.gate.answered += 1
        return completion_from_response(response)


class QueuedTimeout(openai.APITimeoutError):
    """A timeout while the server answered `answered` other requests: this one waited in its queue."""

    def __init__(self, request, answered: int):
        super().__init__(request)
        self.answered = answered


class Gate:
    """How many requests may be in flight: `limit`, lowered on a queueing timeout, then grown again slowly.

    `answered` counts the server's answers (any status); a request that timed out while it grew was queued.
    """

    def __init__(self, limit: int):
        self.ceiling = self.limit = self.lowest = limit
        self.in_flight = self.answered = self._since_change = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1

    async def __aexit__(self, exc_type, exc, tb) -> None:
        async with self._changed:
            self.in_flight -= 1
            if exc is None:
                self._grow()
            self._changed.notify_all()

    def lower(self, answered: int) -> None:
        """A request timed out while the server gave `answered` answers: so many get through within a timeout
        (one of them perhaps begun before the wait), so at most one less may wait in its queue (never below 1)."""
        self.limit = max(1, min(self.limit, answered - 1))
        self.lowest = min(self.lowest, self.limit)
        self._since_change = 0

    def _grow(self) -> None:
        self._since_change += 1
        if self.limit < self.ceiling and self._since_change >= GROWTH_WINDOWS * self.limit:
            self.limit += 1
            self._since_change = 0


def form_note(form: str, refused: dict[str, str]) -> str:
    """The run JSON's line on structured output: the form used and what the server refused on the way."""
    note = f"structured output: {FORM_NAMES[form]}"
    if refused:
        note += "; the server refused " + "; ".join(f"{FORM_NAMES[f]} ({why})" for f, why in refused.items())
    if form == PROMPT_ONLY:
        note += "; answers follow the JSON prompt only and are parsed as JSON or text"
    return note


def one_line(text: str, limit: int = 300) -> str:
    """`text` on one line (a server's multi-line error), cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def response_format(schema: dict, form: str = JSON_SCHEMA) -> dict:
    """The `response_format` that asks the server for JSON under one answer schema, in one of the structured forms."""
    if form == JSON_OBJECT:
        return {"type": "json_object", "schema": schema}
    if form == JSON_SCHEMA:
        return {"type": "json_schema", "json_schema": {"name": "knowledge", "schema": schema, "strict": True}}
    raise ValueError(f"no response_format for the structured form {form!r}")


def check_settings(settings: GenerationSettings) -> None:
    """Refuse, before any request, a setting the OpenAI chat API has no parameter for."""
    if settings.repetition_penalty != 1.0:
        raise ConfigError("repetition_penalty is not a parameter of the OpenAI chat API; use the transformers or "
                          "vllm backend for it")


def chat_request(model: str, messages: Messages, settings: GenerationSettings, fmt: dict | None) -> dict:
    """The body of one chat completion request (`fmt`: its response_format, if any); the batch backend sends this too."""
    return {
        "model": model,
        "messages": messages,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_new_tokens,
        "seed": settings.seed,
        **({"response_format": fmt} if fmt else {}),
    }


def refuses_schema(exc: openai.APIError) -> bool:
    """True for a 4xx/5xx whose body names response_format, json_schema or the schema: the server does not take it.

    Any status: llama-cpp-python answers `json_schema` with a 500 (a pydantic literal_error). Never 408 or 429,
    which say "later", not "not this".
    """
    if not isinstance(exc, openai.APIStatusError) or exc.status_code in _RETRY_STATUSES:
        return False
    said = f"{exc.message} {exc.body}".lower()
    return any(word in said for word in ("response_format", "json_schema", "schema"))


def _drive(loop: asyncio.AbstractEventLoop, main: asyncio.Task, put: Callable) -> None:
    """Run `main` to its end on `loop` in this thread, then shut the loop's helpers down as `asyncio.run` would."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    except asyncio.CancelledError:
        pass  # the consumer stopped iterating; nobody is waiting for results
    except Exception as exc:  # a bug, not one prompt's failure: the consumer re-raises it
        put(exc)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)


def resolve_api_key(api_key: str | None, base_url: str | None) -> str:
    """The key to send: the given one, else OPENAI_API_KEY, else "EMPTY" for a server that is not OpenAI's own."""
    key = api_key or os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    url = base_url or os.environ.get("OPENAI_BASE_URL")
    if url and urlparse(url).hostname != OPENAI_HOST:
        return PLACEHOLDER_KEY
    raise ConfigError(
        "the openai backend needs an API key: set OPENAI_API_KEY, or set OPENAI_BASE_URL to a local "
        "OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1 for `vllm serve`)"
    )


def completion_from_response(response) -> Completion:
    """Map a chat.completion response to a Completion: finish_reason "length" -> truncated, text kept."""
    if not response.choices:
        return Completion("", "api_error", error="the response held no choices")
    choice = response.choices[0]
    usage = response.usage
    tokens = (usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else (0, 0)
    if choice.message.content is None:
        return Completion(
            "", "api_error", *tokens, error=f"no text in the answer (finish_reason={choice.finish_reason})"
        )
    status = "truncated" if choice.finish_reason == "length" else "ok"
    return Completion(choice.message.content, status, *tokens)


def is_retryable(exc: openai.APIError) -> bool:
    """Connection errors, timeouts, 408, 429 and 5xx may pass; other statuses (400, 401, 404, ...) will not."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUSES or exc.status_code >= 500
    return False  # e.g. a response that does not fit the schema


def retry_after_seconds(exc: openai.APIError) -> float | None:
    """The server's requested wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if any."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    return parse_retry_after(exc.response.headers)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait per the headers; None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass  # an unreadable value: fall back to retry-after, then to plain backoff
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass  # not seconds: try the HTTP-date form
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def retry_delay(attempt: int, retry_after: float | None, base: float, cap: float, u: float | None = None) -> float:
    """Seconds before retry number `attempt` (0-based): the server's retry-after, else full jitter; never over cap."""
    if retry_after is not None:
        return min(retry_after, cap)
    u = random.random() if u is None else u
    return u * min(cap, base * 2**attempt)


def describe_error(exc: openai.APIError, attempts: int) -> str:
    """A one-line account of the last failure and how many attempts were made."""
    if isinstance(exc, openai.APIStatusError):
        what = f"HTTP {exc.status_code}: {exc.message.removeprefix(f'Error code: {exc.status_code} - ')}"
    elif isinstance(exc, openai.APITimeoutError):
        what = "request timed out"
    elif isinstance(exc, openai.APIConnectionError):
        what = f"connection error: {exc.__cause__ or exc.message}"
    else:
        what = f"{type(exc).__name__}: {exc.message}"
    return f"{what} (after {attempts} attempt{'s' if attempts > 1 else ''})"


def _check_settings(
    concurrency: int, max_retries: int, timeout: float | None, backoff_base: float, backoff_max: float
) -> None:
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    if max_retries < 0:
        raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    if backoff_base < 0:
        raise ConfigError(f"backoff_base must be >= 0 seconds, got {backoff_base}")
    if backoff_max < backoff_base:
        raise ConfigError(f"backoff_max must be >= backoff_base ({backoff_base}), got {backoff_max}")
