"""A loopback OpenAI-compatible chat server with scriptable faults, for testing the openai backend over real HTTP."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from email.policy import HTTP as email_policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """How the server answers one call: an HTTP status, extra headers, a delay before answering, a finish_reason.

    `shape` bends a 200 answer as some servers do: "no_choices" (an empty `choices` list) or "null_content"
    (the message's `content` is null). `text` replaces the answer's text (what a model wrote, e.g. broken JSON).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str = "stop"
    shape: str = ""
    text: str | None = None


OK = Reply()
SCHEMA_REFUSED = Reply(status=400)
LLAMA_CPP_PYTHON_REFUSAL = Reply(status=500)
CLIENT_GONE = Reply(status=400)

# How servers take `response_format` (the `structured` option):
#   "openai": json_schema and json_object both give a JSON answer (OpenAI, vLLM, llama.cpp's llama-server);
#   "refuses": a 400 naming json_schema for any response_format (the old `refuse_schema=True`);
#   "llama-cpp-python": its server (0.3.x): `type` must be "text" or "json_object" (with an optional `schema`), so
#       json_schema gets HTTP 500 with the body of LLAMA_CPP_PYTHON_500 and json_object a JSON answer;
#   "ignores": the field is accepted and ignored: the answer is the model's text for the prompt.
STRUCTURED = ("openai", "refuses", "llama-cpp-python", "ignores")
# What llama-cpp-python 0.3.36's server (FastAPI, pydantic 2) says to response_format json_schema, as captured from
# it (only the path differs): its RouteErrorHandler wraps the RequestValidationError as an internal_server_error.
LLAMA_CPP_PYTHON_500 = {
    "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
               "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
               "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n"
               "  File \"/venv/lib/python3.11/site-packages/llama_cpp/server/app.py\", line 376, in create_chat_completion\n"
               "    POST /v1/chat/completions",
    "type": "internal_server_error",
    "param": None,
    "code": None,
}


@dataclass
class Call:
    """One request the server received."""

    content: str  # the last user message
    started: float  # time.monotonic() on arrival
    status: int
    body: dict
    headers: dict[str, str]


def answer_text(content: str) -> str:
    """The deterministic answer the server gives to a last user message."""
    return f"answer to: {content}"


def json_answer_text(content: str) -> str:
    """The answer under response_format json_schema: a structured answer naming the content."""
    aspect = {"aspect": "Type", "value": content, "rationale": "The input says so."}
    return json.dumps({"explicit": [aspect], "implicit": [], "key_features": [content]})


class FakeOpenAIServer:
    """`POST /v1/chat/completions` on 127.0.0.1 (a free port), answering per a script keyed by the last user message.

    `script[content]` is a list of replies for that content's 1st, 2nd, ... call; its last entry repeats,
    so `[Reply(429), OK]` fails once then answers, and `[Reply(400)]` fails every time. Unscripted content is answered.

    With `slots=1` the server works on one chat request at a time, `service` seconds each, as a CPU llama.cpp
    server does: the others wait in its queue, and one whose client has gone away meanwhile is dropped when its
    turn comes (answered 400 "Client closed request", as llama-cpp-python does; counted in `dropped`).
    """

    def __init__(
        self,
        script: dict[str, list[Reply]] | None = None,
        refuse_schema: bool = False,
        batch_plans: list[BatchPlan] | None = None,
        structured: str = "openai",
        slots: int | None = None,
        service: float = 0.0,
    ):
        if structured not in STRUCTURED:
            raise ValueError(f"structured must be one of {STRUCTURED}, got {structured!r}")
        self.script = dict(script or {})
        self.batch_api = FakeBatchAPI(self, batch_plans)  # /v1/files and /v1/batches
        self.structured = "refuses" if refuse_schema else structured
        self.calls: list[Call] = []
        self.in_flight = self.max_in_flight = 0
        self.dropped = 0  # queued requests whose client had gone when their turn came
        self.served: list[str] = []  # contents of the requests worked on, in order (with `slots`)
        self.service = service
        self._slots = threading.Semaphore(slots) if slots else None
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # handlers still sleeping out a client's timeout must not hold up the exit
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-openai-server", daemon=True
        )  # a short poll interval, so leaving the `with` block is quick

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def calls_for(self, content: str) -> list[Call]:
        """The calls received for one last user message, in arrival order."""
        with self._lock:
            return [c for c in self.calls if c.content == content]

    def _arrive(self, content: str, body: dict, headers: dict[str, str]) -> Reply:
        with self._lock:
            replies = self.script.get(content, [OK])
            n_before = sum(1 for c in self.calls if c.content == content)
            reply = self.structured_reply(replies[min(n_before, len(replies) - 1)], body)
            self.calls.append(Call(content, time.monotonic(), reply.status, body, headers))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return reply

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def structured_reply(self, reply: Reply, body: dict) -> Reply:
        """The reply as this server's kind answers the request's response_format (see STRUCTURED)."""
        kind = (body.get("response_format") or {}).get("type")
        if kind is None or reply.status != 200 or self.structured in ("openai", "ignores"):
            return reply
        if self.structured == "refuses":
            return SCHEMA_REFUSED
        return reply if kind in ("text", "json_object") else LLAMA_CPP_PYTHON_REFUSAL


def _client_gone(sock: socket.socket) -> bool:
    """Whether the client closed the connection (it timed out): readable with nothing to read. Its request was read."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            if self.path.startswith(BATCH_ROUTES):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                self._send_raw(*server.batch_api.post(self.path, self.headers.get("content-type", ""), body))
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}, {})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            content = _last_user_content(body.get("messages", []))
            reply = server._arrive(content, body, {k.lower(): v for k, v in self.headers.items()})
            try:
                if server._slots is None:
                    time.sleep(reply.delay)
                else:
                    reply = self._in_turn(reply, content)
            finally:
                # Leave before writing: the client holds its concurrency slot until it has read the answer,
                # so the server's count can never run ahead of the client's.
                server._leave()
            self._send(reply.status, _shaped(reply, _payload(reply, content, body, server.structured)), reply.headers)

        def _in_turn(self, reply: Reply, content: str) -> Reply:
            """Wait for a free slot, then work `service` (+ the reply's delay) seconds; a client gone by then is dropped."""
            with server._slots:
                if _client_gone(self.connection):
                    with server._lock:
                        server.dropped += 1
                    return CLIENT_GONE
                with server._lock:
                    server.served.append(content)
                time.sleep(server.service + reply.delay)
            return reply

        def do_GET(self) -> None:
            self._send_raw(*server.batch_api.get(self.path))

        def _send_raw(self, status: int, data: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client was killed (a test SIGKILLs it mid-run)

        def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout) before the delayed answer came

        def log_message(self, format: str, *args) -> None:
            pass  # keep test output quiet

    return Handler


def _last_user_content(messages: list[dict]) -> str:
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def _payload(reply: Reply, content: str, body: dict, structured: str = "openai") -> dict:
    if reply is SCHEMA_REFUSED:
        return {"error": {"message": "response_format type json_schema is not supported", "type": "invalid_request_error"}}
    if reply is LLAMA_CPP_PYTHON_REFUSAL:
        return {"error": LLAMA_CPP_PYTHON_500}
    if reply is CLIENT_GONE:
        return {"detail": "Client closed request"}
    if reply.status != 200:
        return {"error": {"message": f"scripted failure {reply.status} for {content!r}", "type": "fake", "code": None}}
    text = reply.text if reply.text is not None else _answer(content, body, structured)
    prompt_tokens = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
    return {
        "id": f"chatcmpl-{abs(hash(content)) % 10**8}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        },
    }


def _answer(content: str, body: dict, structured: str) -> str:
    """The model's text: a JSON answer when the server constrained it to one, else the plain answer."""
    constrained = "response_format" in body and structured != "ignores"
    return json_answer_text(content) if constrained else answer_text(content)


def _shaped(reply: Reply, payload: dict) -> dict:
    """The answer bent per `reply.shape` (no choices, or a null content)."""
    if reply.shape == "no_choices":
        return {**payload, "choices": []}
    if reply.shape == "null_content":
        choice = payload["choices"][0]
        return {**payload, "choices": [{**choice, "message": {**choice["message"], "content": None}}]}
    return payload


# ---- the Batch API: /v1/files and /v1/batches, as OpenAI documents them -------------------------------------------

BATCH_ROUTES = ("/v1/files", "/v1/batches")
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions")
TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class BatchPlan:
    """How the server runs one batch: the statuses its retrieves step through, and the requests it answers badly.

    Each GET /v1/batches/{id} moves one step along `statuses` (create answers with the first), unless the
    server's batch API is `held`. At a terminal status the requests run through the chat script; those named
    in `unfinished` are left undone (error-file lines with code batch_expired) and those in `row_errors` come
    back with a per-request `error` and no response. A plan ending in "failed" fails validation: no files.
    """

    statuses: tuple[str, ...] = ("validating", "in_progress", "finalizing", "completed")
    unfinished: frozenset[str] = frozenset()
    row_errors: frozenset[str] = frozenset()


COMPLETES = BatchPlan()
EXPIRES = BatchPlan(statuses=("validating", "in_progress", "expired"))
FAILS = BatchPlan(statuses=("validating", "failed"))


class FakeBatchAPI:
    """Files and batches held in memory; the n-th batch created follows `plans[n]` (the last plan repeats)."""

    def __init__(self, server: FakeOpenAIServer, plans: list[BatchPlan] | None):
        self.server, self.plans = server, list(plans or [COMPLETES])
        self.files: dict[str, tuple[str, bytes]] = {}  # id -> (purpose, content)
        self.batches: dict[str, dict] = {}  # id -> the batch object, in creation order
        self.steps: dict[str, int] = {}  # id -> index into its plan's statuses
        self.retrieves = 0
        self.held = False  # True: retrieves do not move batches on (a test kills the client meanwhile)
        self.failing_retrieves = 0  # the next n retrieves answer 503, as a passing outage would
        self._lock = threading.Lock()

    def post(self, path: str, content_type: str, body: bytes) -> tuple[int, bytes, str]:
        """POST /v1/files (multipart upload) or /v1/batches (create)."""
        with self._lock:
            if path.rstrip("/") == "/v1/files":
                return self._upload(content_type, body)
            if path.rstrip("/") == "/v1/batches":
                return self._create(json.loads(body or b"{}"))
        return _json(404, _error(f"no route {path}"))

    def get(self, path: str) -> tuple[int, bytes, str]:
        """GET /v1/files/{id}/content, /v1/batches/{id} (one step on) or /v1/batches (newest first)."""
        parts = path.split("?")[0].strip("/").split("/")
        with self._lock:
            if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
                if parts[2] not in self.files:
                    return _json(404, _error(f"no file {parts[2]}"))
                return 200, self.files[parts[2]][1], "application/octet-stream"
            if parts == ["v1", "batches"]:
                data = list(reversed(self.batches.values()))
                return _json(200, {"object": "list", "data": data, "has_more": False,
                                   "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})
            if parts[:2] == ["v1", "batches"] and len(parts) == 3:
                if parts[2] not in self.batches:
                    return _json(404, _error(f"no batch {parts[2]}"))
                if self.failing_retrieves > 0:
                    self.failing_retrieves -= 1
                    return _json(503, _error("scripted outage"))
                self.retrieves += 1
                return _json(200, self._step(parts[2]))
        return _json(404, _error(f"no route {path}"))

    def _upload(self, content_type: str, body: bytes) -> tuple[int, bytes, str]:
        fields = _multipart(content_type, body)
        if fields.get("purpose", (None, b""))[1] != b"batch":
            return _json(400, _error("purpose must be 'batch' here"))
        if "file" not in fields:
            return _json(400, _error("no file part"))
        file_id = f"file-{len(self.files) + 1:04d}"
        filename, content = fields["file"]
        self.files[file_id] = ("batch", content)
        return _json(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                           "filename": filename or "upload.jsonl", "purpose": "batch", "status": "processed"})

    def _create(self, body: dict) -> tuple[int, bytes, str]:
        if body.get("input_file_id") not in self.files:
            return _json(400, _error(f"no file {body.get('input_file_id')!r}"))
        if body.get("endpoint") not in BATCH_ENDPOINTS or body.get("completion_window") != "24h":
            return _json(400, _error("endpoint must be a batch endpoint and completion_window '24h'"))
        batch_id = f"batch_{len(self.batches) + 1:04d}"
        plan = self._plan(len(self.batches))
        now = int(time.time())
        total = sum(1 for line in self.files[body["input_file_id"]][1].splitlines() if line.strip())
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": "24h", "status": plan.statuses[0],
            "output_file_id": None, "error_file_id": None, "created_at": now, "expires_at": now + 86400,
            "metadata": body.get("metadata"), "request_counts": {"total": total, "completed": 0, "failed": 0},
        }
        self.steps[batch_id] = 0
        return _json(200, self.batches[batch_id])

    def _plan(self, n: int) -> BatchPlan:
        return self.plans[min(n, len(self.plans) - 1)]

    def _step(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        plan = self._plan(list(self.batches).index(batch_id))
        if self.held or batch["status"] in TERMINAL:
            return batch
        self.steps[batch_id] = min(self.steps[batch_id] + 1, len(plan.statuses) - 1)
        batch["status"] = plan.statuses[self.steps[batch_id]]
        batch[f"{batch['status']}_at"] = int(time.time())
        if batch["status"] in TERMINAL:
            self._run(batch, plan)
        return batch

    def _run(self, batch: dict, plan: BatchPlan) -> None:
        """Answer every request of a batch that reached its end, writing the output and error files."""
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]][1].decode().splitlines() if line.strip()]
        problem = _invalid_input(lines, batch["endpoint"])
        if problem or batch["status"] == "failed":
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "line": None,
                                                           "message": problem or "scripted validation failure"}]}
            return
        out, err = [], []
        for n, line in enumerate(lines):
            result = self._answer(line, plan, batch["status"], f"batch_req_{batch['id']}_{n}")
            ok = result["response"] is not None and result["response"]["status_code"] == 200
            (out if ok else err).append(json.dumps(result))
        batch["output_file_id"] = self._store("\n".join(out)) if out else None
        batch["error_file_id"] = self._store("\n".join(err)) if err else None
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}

    def _answer(self, line: dict, plan: BatchPlan, status: str, request_id: str) -> dict:
        body = line["body"]
        content = _last_user_content(body.get("messages", []))
        result = {"id": request_id, "custom_id": line["custom_id"], "response": None, "error": None}
        if status == "expired" and content in plan.unfinished:
            result["error"] = {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}
        elif content in plan.row_errors:
            result["error"] = {"code": "server_error", "message": f"scripted batch row failure for {content!r}"}
        else:
            reply = self.server._arrive(content, body, {})  # the chat script applies: Reply(500) is an error body
            self.server._leave()
            result["response"] = {"status_code": reply.status, "request_id": request_id,
                                  "body": _payload(reply, content, body, self.server.structured)}
        return result

    def _store(self, text: str) -> str:
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = ("batch_output", (text + "\n").encode())
        return file_id


def _invalid_input(lines: list[dict], endpoint: str) -> str | None:
    """What makes a batch input file invalid, as the API's validation would say; None when it is valid."""
    seen = set()
    for n, line in enumerate(lines, start=1):
        if line.get("method") != "POST" or line.get("url") != endpoint:
            return f"line {n}: method must be POST and url {endpoint}"
        if not isinstance(line.get("body"), dict) or not {"model", "messages"} <= line["body"].keys():
            return f"line {n}: body must hold model and messages"
        if not isinstance(line.get("custom_id"), str) or line["custom_id"] in seen:
            return f"line {n}: custom_id must be a string, unique in the file"
        seen.add(line["custom_id"])
    return None if lines else "the input file holds no requests"


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The parts of a multipart/form-data body: name -> (filename, bytes)."""
    message = BytesParser(policy=email_policy).parsebytes(b"content-type: " + content_type.encode() + b"\r\n\r\n" + body)
    parts = message.iter_parts() if message.is_multipart() else []
    return {part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in parts}


def _json(status: int, payload: dict) -> tuple[int, bytes, str]:
    return status, json.dumps(payload).encode(), "application/json"


def _error(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}
