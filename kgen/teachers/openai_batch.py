"""Teacher over the OpenAI Batch API: the same chat requests as the `openai` backend, run offline at about half the price.

The requests go up as batch JSONL files (one line per request, `custom_id` = the record's content key, `body` =
exactly what the `openai` backend sends), at most 50,000 requests and ~190 MB per batch. Each batch is created
with a 24 h completion window, polled with backoff, and its output and error files are parsed into the same
Completions the `openai` backend yields; the records are the same too (model `openai:MODEL`, same keys), so a
batch run and a live run resume each other.

Resume: the batches in flight (id, input file id, the keys each covers) are kept in OUTPUT.batch.json, written
atomically before a batch is created and after. A run killed after submitting resumes by polling those batches,
never submitting their requests again; a batch leaves the file only after its records were appended (the run
appends each answer before asking for the next). A request that failed, expired or was never answered is
yielded as an api_error, which the run retries on the next run in a new batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import openai
from tqdm import tqdm

from ground.errors import ConfigError, RecordError
from ground.files import dumps, write_json
from kgen.teachers.base import Completion, GenerationSettings, Messages, prompt_schema, request_key
from kgen.teachers.openai_backend import (
    chat_request,
    check_settings,
    completion_from_response,
    describe_error,
    is_retryable,
    resolve_api_key,
    response_format,
)

ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
MAX_REQUESTS = 50_000  # the API's limit per batch
MAX_BYTES = 190 * 2**20  # under the API's 200 MB per input file
POLL_START_S = 5.0
POLL_MAX_S = 60.0
STATE_VERSION = 1


def batch_state_path(output: Path) -> Path:
    """Where a batch run keeps the batches it has in flight: beside its output."""
    output = Path(output)
    return output.with_name(output.name + ".batch.json")


@dataclass
class Submitted:
    """One batch in flight: its input file, the batch made from it (None until created) and the keys it covers."""

    input_file_id: str
    keys: list[str]
    batch_id: str | None = None


@dataclass
class BatchState:
    """What OUTPUT.batch.json holds."""

    model: str
    batches: list[Submitted] = field(default_factory=list)


class OpenAIBatchTeacher:
    """Answers every prompt through the Batch API; `complete` yields each batch's answers once it has ended."""

    def __init__(
        self,
        model: str,
        state_path: Path,
        base_url: str | None = None,
        api_key: str | None = None,
        poll_start: float | None = None,
        poll_max: float | None = None,
        max_retries: int = 5,
        timeout: float = 120.0,
    ):
        self.model = f"openai:{model}"  # the same requests as the openai backend: same keys, same records
        self.api_model, self.state_path = model, Path(state_path)
        self.base_url, self.api_key = base_url, resolve_api_key(api_key, base_url)
        self.poll_start = POLL_START_S if poll_start is None else poll_start  # read now, so tests may shorten it
        self.poll_max = POLL_MAX_S if poll_max is None else poll_max
        self.max_retries, self.timeout = max_retries, timeout
        self.notes: list[str] = []  # written to the run JSON: every batch and how it ended

    def complete(self, prompts: Sequence[Messages], settings: GenerationSettings,
                 schemas: Sequence[dict] | None = None) -> Iterator[tuple[int, Completion]]:
        """Resume the stored batches that cover these prompts, submit the rest, and yield answers as batches end.

        Structured answers send each request its own `response_format` (its schema from `schemas`, if given).
        """
        check_settings(settings)
        where: dict[str, list[int]] = {}  # key -> indices (two tasks may render one request)
        for index, messages in enumerate(prompts):  # custom_id is the key the run gives the record
            where.setdefault(request_key(messages, self.model, settings), []).append(index)
        if not where:
            return
        with openai.OpenAI(api_key=self.api_key, base_url=self.base_url, timeout=self.timeout,
                           max_retries=self.max_retries) as client:
            state = self._resumable(where)
            covered = {key for entry in state.batches for key in entry.keys}
            pending = [key for key in where if key not in covered]
            for chunk in batch_lines(pending, where, prompts, self.api_model, settings, schemas):
                self._submit(client, state, chunk)
            for entry in state.batches:
                self._create(client, state, entry, adopt=True)  # uploaded by a run killed before it was created
            yield from self._collect(client, state, where)

    def close(self) -> None:
        """Nothing to release: each `complete` call opens and closes its own client."""

    def _resumable(self, where: dict[str, list[int]]) -> BatchState:
        """The stored batches that still cover some of these keys; others are dropped from the file, with a note."""
        state = read_state(self.state_path) or BatchState(self.model)
        keep = [entry for entry in state.batches if any(key in where for key in entry.keys)]
        for entry in state.batches:
            if entry not in keep:
                self._say(f"batch {entry.batch_id or entry.input_file_id} holds none of the requests still to do "
                          "(another prompt, model or settings, or all done); it is no longer followed")
            else:
                self._say(f"resuming batch {entry.batch_id or entry.input_file_id} from {self.state_path}")
        if len(keep) < len(state.batches):
            state.batches = keep
            write_state(self.state_path, state)
        return state

    def _submit(self, client: openai.OpenAI, state: BatchState, chunk: list[tuple[str, bytes]]) -> None:
        """Upload one batch input file, then create its batch; the state file names it before and after."""
        data = b"".join(line for _, line in chunk)
        try:
            uploaded = client.files.create(file=("kgen-batch.jsonl", data, "application/jsonl"), purpose="batch")
        except openai.APIError as exc:
            raise ConfigError(f"the batch input could not be uploaded: {describe_error(exc, self.max_retries + 1)}") from None
        entry = Submitted(uploaded.id, [key for key, _ in chunk])
        state.batches.append(entry)
        write_state(self.state_path, state)  # before creating: a kill now resumes with this file, never uploads again
        self._create(client, state, entry, adopt=False)

    def _create(self, client: openai.OpenAI, state: BatchState, entry: Submitted, adopt: bool) -> None:
        """Create the batch for an uploaded file; with `adopt`, first look for one a killed run created unsaved."""
        if entry.batch_id is not None:
            return
        try:
            recent = client.batches.list(limit=100).data if adopt else []  # such a batch is among the newest
            found = [b for b in recent if b.input_file_id == entry.input_file_id]
            batch = found[0] if found else client.batches.create(
                input_file_id=entry.input_file_id, endpoint=ENDPOINT, completion_window=WINDOW,
                metadata={"created_by": "kgen generate"},
            )
        except openai.APIError as exc:
            raise ConfigError(
                f"the batch could not be created: {describe_error(exc, self.max_retries + 1)}; "
                f"{self.state_path} keeps the uploaded file, so a re-run tries again without uploading"
            ) from None
        entry.batch_id = batch.id
        write_state(self.state_path, state)
        self._say(f"submitted batch {batch.id}: {len(entry.keys)} requests, results within {WINDOW}")

    def _collect(self, client: openai.OpenAI, state: BatchState, where: dict[str, list[int]]) -> Iterator[tuple[int, Completion]]:
        """Poll every batch in flight with backoff; yield a batch's answers when it ends, then drop it from the file."""
        delay, last = self.poll_start, ""
        while state.batches:
            seen = []
            for entry in list(state.batches):
                batch = self._retrieve(client, entry)
                if batch is None:
                    continue
                if batch.status not in TERMINAL:
                    seen.append(batch)
                    continue
                answers = self._download(client, batch)
                missing = Completion("", "api_error", error=unanswered_error(batch))
                for key in entry.keys:
                    for index in where.get(key, []):
                        yield index, answers.get(key, missing)
                # Every answer above was appended before the run asked for the next one: now the batch may go.
                state.batches.remove(entry)
                write_state(self.state_path, state)
                self._say(f"batch {batch.id} {batch.status}: {counts(batch)}")
            line = progress_line(seen)
            if line and line != last:
                tqdm.write(line)
                last = line
            if state.batches:
                time.sleep(delay)
                delay = min(delay * 1.5, self.poll_max)

    def _retrieve(self, client: openai.OpenAI, entry: Submitted):
        """The batch now; None after a passing failure (the poll loop is the backoff), raise for any other."""
        try:
            return client.batches.retrieve(entry.batch_id)
        except openai.APIError as exc:
            if is_retryable(exc):
                tqdm.write(f"openai batch {entry.batch_id}: {describe_error(exc, self.max_retries + 1)}; checking again")
                return None
            raise ConfigError(
                f"{self.state_path}: batch {entry.batch_id} cannot be read ({describe_error(exc, 1)}); is this the "
                "provider and key that submitted it? Move the file aside to submit the requests anew"
            ) from None

    def _download(self, client: openai.OpenAI, batch) -> dict[str, Completion]:
        try:
            return download_answers(client, batch)
        except openai.APIError as exc:
            raise ConfigError(f"the results of batch {batch.id} could not be downloaded: "
                                f"{describe_error(exc, self.max_retries + 1)}; a re-run resumes from {self.state_path}") from None

    def _say(self, note: str) -> None:
        self.notes.append(note)
        tqdm.write(f"openai batch: {note}")


def batch_lines(
    keys: list[str], where: dict[str, list[int]], prompts: Sequence[Messages], model: str, settings: GenerationSettings,
    schemas: Sequence[dict] | None = None,
) -> Iterator[list[tuple[str, bytes]]]:
    """(key, JSONL line) chunks, each within the API's limits on requests and bytes per batch."""
    chunk, size = [], 0
    for key in keys:
        index = where[key][0]
        fmt = response_format(prompt_schema(schemas, index)) if settings.structured else None
        body = chat_request(model, prompts[index], settings, fmt)
        line = (dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}) + "\n").encode()
        if chunk and (len(chunk) == MAX_REQUESTS or size + len(line) > MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((key, line))
        size += len(line)
    if chunk:
        yield chunk


def download_answers(client: openai.OpenAI, batch) -> dict[str, Completion]:
    """custom_id -> Completion from a finished batch's output and error files."""
    answers = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        for line in client.files.content(file_id).text.splitlines():
            if line.strip():
                result = json.loads(line)
                answers[result["custom_id"]] = completion_from_result(result, batch.id)
    return answers


def completion_from_result(result: dict, batch_id: str) -> Completion:
    """One line of a batch output or error file as the Completion the live backend would have given."""
    from openai.types.chat import ChatCompletion
    from pydantic import ValidationError

    error, response = result.get("error"), result.get("response") or {}
    if error:
        return Completion("", "api_error", error=f"{error.get('code')}: {error.get('message')} (batch {batch_id})")
    body = response.get("body") or {}
    if response.get("status_code") != 200:
        message = (body.get("error") or {}).get("message", "no message")
        return Completion("", "api_error", error=f"HTTP {response.get('status_code')}: {message} (batch {batch_id})")
    try:
        return completion_from_response(ChatCompletion.model_validate(body))
    except ValidationError as exc:
        return Completion("", "api_error", error=f"the answer is not a chat completion ({exc.error_count()} errors, batch {batch_id})")


def unanswered_error(batch) -> str:
    """Why a request of a finished batch has no line in either file."""
    reasons = [e.message for e in (batch.errors.data or [])] if batch.errors and batch.errors.data else []
    why = f": {'; '.join(m for m in reasons if m)}" if reasons else ""
    return f"batch {batch.id} ended {batch.status} without an answer for this request{why}"


def counts(batch) -> str:
    """'done/total done, n failed' from a batch's request counts."""
    c = batch.request_counts
    return f"{c.completed}/{c.total} done, {c.failed} failed" if c else "no request counts"


def progress_line(batches: list) -> str:
    """One line on the batches still running; empty when none is."""
    if not batches:
        return ""
    states = ", ".join(f"{b.id} {b.status} {counts(b)}" for b in batches)
    return f"openai batch: waiting on {len(batches)} batch{'es' if len(batches) > 1 else ''}: {states}"


def read_state(path: Path) -> BatchState | None:
    """The batches a killed run left in flight; None when there is no state file."""
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        state = BatchState(raw["model"], [Submitted(**entry) for entry in raw["batches"]])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RecordError(f"{path}: not a kgen batch state ({type(exc).__name__}: {exc}); move it aside "
                            "(it may name batches still running) to submit the requests anew") from None
    return state


def write_state(path: Path, state: BatchState) -> None:
    """Save the batches in flight atomically; with none left, remove the file."""
    if state.batches:
        write_json(path, {"version": STATE_VERSION, **asdict(state)})
    else:
        path.unlink(missing_ok=True)
