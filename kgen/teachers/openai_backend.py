"""Teacher for any OpenAI-compatible chat endpoint: OpenAI itself, `vllm serve`, llama.cpp's server, Ollama.

The base URL and key come from the arguments or from OPENAI_BASE_URL / OPENAI_API_KEY. With no key anywhere and a
base URL other than OpenAI's own, the placeholder key "EMPTY" is sent: self-hosted servers usually run without
auth, and one that does want a key answers 401, which is recorded at once (never retried).

Requests run concurrently (at most `concurrency` in flight) on an event loop in a background thread; `complete`
yields each answer as soon as it arrives. Retries live here, at the network boundary: 408, 429, 5xx, connection
errors and timeouts are retried with exponential backoff and full jitter, honouring `retry-after-ms` /
`retry-after`; any other status is recorded as an api_error for that prompt straight away.
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
from urllib.parse import urlparse

import openai

from ground.errors import ConfigError
from kgen.teachers.base import Completion, GenerationSettings, Messages, prompt_schema

PLACEHOLDER_KEY = "EMPTY"
OPENAI_HOST = "api.openai.com"
_RETRY_STATUSES = frozenset({408, 429})  # and every 5xx


class OpenAITeacher:
    """Chat completions over HTTP with bounded concurrency and retries; one failed prompt never stops the rest."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 16,
        max_retries: int = 5,
        timeout: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ):
        _check_settings(concurrency, max_retries, timeout, backoff_base, backoff_max)
        self.model = f"openai:{model}"
        self.api_model = model
        self.base_url = base_url  # None: the client reads OPENAI_BASE_URL, else OpenAI's own
        self.api_key = resolve_api_key(api_key, base_url)
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.schema_refused = False  # set when the server rejected response_format json_schema
        self.notes: list[str] = []  # written to the run JSON

    def complete(self, prompts: Sequence[Messages], settings: GenerationSettings,
                 schemas: Sequence[dict] | None = None) -> Iterator[tuple[int, Completion]]:
        """Yield (index, answer) as each request finishes; stopping early cancels the requests still in flight.

        Structured answers send each request its own `response_format` (its schema from `schemas`, if given).
        """
        check_settings(settings)
        if not prompts:
            return
        results: queue.SimpleQueue = queue.SimpleQueue()
        loop = asyncio.new_event_loop()
        formats = [response_format(prompt_schema(schemas, i)) for i in range(len(prompts))]
        main = loop.create_task(self._answer_all(list(prompts), formats, settings, results.put))
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

    async def _answer_all(self, prompts: list[Messages], formats: list[dict], settings: GenerationSettings,
                          put: Callable) -> None:
        # One client per call: an httpx pool belongs to the event loop it was first used on.
        async with openai.AsyncOpenAI(
            api_key=self.api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0
        ) as client:
            gate = asyncio.Semaphore(self.concurrency)

            async def answer(index: int, messages: Messages) -> None:
                put((index, await self._answer(client, gate, messages, formats[index], settings)))

            tasks = [asyncio.ensure_future(answer(i, messages)) for i, messages in enumerate(prompts)]
            try:
                await asyncio.gather(*tasks)
            finally:  # cancelled by the consumer, or a bug in one task: leave no task behind
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer(
        self, client: openai.AsyncOpenAI, gate: asyncio.Semaphore, messages: Messages, fmt: dict,
        settings: GenerationSettings,
    ) -> Completion:
        attempts = 0
        while True:
            attempts += 1
            try:
                async with gate:  # held only while a request is in flight, not while backing off
                    structured = settings.structured and not self.schema_refused  # read once a slot is free
                    response = await client.chat.completions.create(
                        **chat_request(self.api_model, messages, settings, fmt if structured else None)
                    )
                return completion_from_response(response)
            except openai.APIError as exc:
                if structured and refuses_schema(exc):
                    self._refuse_schema(exc)
                    attempts -= 1  # the request was never tried as such: ask again, unconstrained
                    continue
                if attempts > self.max_retries or not is_retryable(exc):
                    return Completion("", "api_error", error=describe_error(exc, attempts))
                wait = retry_delay(attempts - 1, retry_after_seconds(exc), self.backoff_base, self.backoff_max)
                await asyncio.sleep(wait)

    def _refuse_schema(self, exc: openai.APIError) -> None:
        if not self.schema_refused:
            self.schema_refused = True
            self.notes.append(
                f"the server rejected response_format json_schema ({describe_error(exc, 1)}); answers were requested "
                "without it, following the JSON prompt only, and parsed as JSON or text"
            )


def response_format(schema: dict) -> dict:
    """The `response_format` that asks the server for JSON under one answer schema."""
    return {"type": "json_schema", "json_schema": {"name": "knowledge", "schema": schema, "strict": True}}


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
    """True for a 400/422 that names response_format or json_schema: the server does not take the schema."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return False
    return any(word in str(exc.message).lower() for word in ("response_format", "json_schema", "schema"))


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
    concurrency: int, max_retries: int, timeout: float, backoff_base: float, backoff_max: float
) -> None:
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    if max_retries < 0:
        raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
    if timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    if backoff_base < 0:
        raise ConfigError(f"backoff_base must be >= 0 seconds, got {backoff_base}")
    if backoff_max < backoff_base:
        raise ConfigError(f"backoff_max must be >= backoff_base ({backoff_base}), got {backoff_max}")
