"""A loopback OpenAI-compatible chat server with scriptable faults, for testing the openai backend over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """How the server answers one call: an HTTP status, extra headers, a delay before answering, a finish_reason."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str = "stop"


OK = Reply()
SCHEMA_REFUSED = Reply(status=400)


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
    """

    def __init__(self, script: dict[str, list[Reply]] | None = None, refuse_schema: bool = False):
        self.script = dict(script or {})
        self.refuse_schema = refuse_schema  # answer 400 to any request with response_format json_schema, as some servers do
        self.calls: list[Call] = []
        self.in_flight = self.max_in_flight = 0
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
            reply = replies[min(n_before, len(replies) - 1)]
            self.calls.append(Call(content, time.monotonic(), reply.status, body, headers))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return reply

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}, {})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            content = _last_user_content(body.get("messages", []))
            reply = server._arrive(content, body, {k.lower(): v for k, v in self.headers.items()})
            if server.refuse_schema and "response_format" in body:
                reply = SCHEMA_REFUSED
            try:
                time.sleep(reply.delay)
            finally:
                # Leave before writing: the client holds its concurrency slot until it has read the answer,
                # so the server's count can never run ahead of the client's.
                server._leave()
            self._send(reply.status, _payload(reply, content, body), reply.headers)

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


def _payload(reply: Reply, content: str, body: dict) -> dict:
    if reply is SCHEMA_REFUSED:
        return {"error": {"message": "response_format type json_schema is not supported", "type": "invalid_request_error"}}
    if reply.status != 200:
        return {"error": {"message": f"scripted failure {reply.status} for {content!r}", "type": "fake", "code": None}}
    text = json_answer_text(content) if "response_format" in body else answer_text(content)
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
