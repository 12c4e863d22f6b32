"""`ctr serve`: the scoring endpoint (FastAPI + uvicorn), its request schema and its size limit.

POST /score  {"user_id", "history": [id | item record], "candidates": [id | item record], "user_features"?: {}}
          -> {"scores": [click probability per candidate, in order], "cache": {...} | null}
GET  /stats  cumulative cache counts;  GET /health.

Every malformed body is a 4xx: unknown fields and wrong types 422 (pydantic, strict),
bodies over the byte limit 413, items or fields the model cannot score 422.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from functools import partial
from typing import Annotated

import anyio

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ctr.cache import CacheStats
from ctr.scoring import RequestError, ServeConfig, Served

MAX_ITEMS = 2000  # candidates, and history entries (only the model's last max_history are used)
Text = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Id = Name | Annotated[int, Field(ge=0)]
Scalar = str | int | float | bool | None


class AspectValue(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    aspect: Annotated[str, StringConstraints(max_length=200)] = ""
    value: Text


class ItemKnowledge(BaseModel):
    """An item's knowledge as a knowledge record holds it: a run whose tables encode knowledge text (`distill
    embed --source knowledge`) writes it before the item's input, as the tables did (`ctr.encoders`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    explicit: Annotated[list[AspectValue], Field(max_length=64)] = []
    implicit: Annotated[list[AspectValue], Field(max_length=64)] = []
    key_phrases: Annotated[list[Name], Field(max_length=64)] = []


class ItemRecord(BaseModel):
    """An item the caller describes (kgen item record): a new item is scored from its name and fields."""

    model_config = ConfigDict(extra="forbid", strict=True)
    item_id: Id
    name: Text
    original_name: Text | None = None
    category: Name | None = None
    attributes: Annotated[dict[Name, Scalar | list[Scalar]], Field(max_length=64)] | None = None
    stats: Annotated[dict[Name, int], Field(max_length=16)] | None = None
    knowledge: ItemKnowledge | None = None


Entry = Id | ItemRecord


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    user_id: Id
    history: Annotated[list[Entry], Field(max_length=MAX_ITEMS)] = []
    candidates: Annotated[list[Entry], Field(min_length=1, max_length=MAX_ITEMS)]
    user_features: Annotated[dict[Name, Name], Field(max_length=64)] | None = None


def entry(value: Entry) -> str | dict:
    """A request entry as Served.score takes it: an id string or a record dict with a string id."""
    if isinstance(value, ItemRecord):
        return {**value.model_dump(exclude_none=True), "item_id": str(value.item_id)}
    return str(value)


class BodyLimit:
    """ASGI middleware: a body over max_bytes (declared or streamed) is answered 413 before parsing."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            return await self.too_large(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body, more = body + message.get("body", b""), message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self.too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def too_large(self, scope, receive, send):
        response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each problem; the offending input is not echoed (it may be huge, or not JSON: 1e999 is inf)."""
    errors = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg")), "type": str(e.get("type"))}
              for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


def create_app(served: Served, max_body_bytes: int) -> FastAPI:
    """The ASGI app around a loaded model."""
    app = FastAPI(title="ctr serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(RequestValidationError, invalid_request)
    totals, counts = CacheStats(), {"requests": 0}
    limiter = anyio.CapacityLimiter(1)  # one request at a time through the model

    @app.post("/score")
    async def score(request: ScoreRequest) -> dict:
        # Parsed and validated in the event loop; scored in one worker thread, so concurrent requests queue
        # without a crowd of threads fighting for the GIL (on 2 cores that convoy cost 3x in throughput).
        run = partial(served.score, str(request.user_id), [entry(e) for e in request.history],
                      [entry(e) for e in request.candidates], request.user_features)
        try:
            out = await anyio.to_thread.run_sync(run, limiter=limiter)
        except RequestError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        counts["requests"] += 1
        if out["cache"]:
            totals.add(CacheStats(**{k: out["cache"][k] for k in ("lru", "redis", "computed", "redis_writes")}))
        return out

    @app.get("/stats")
    def stats() -> dict:
        return {"model": served.name, **counts, "cache": totals.as_dict() if served.knowledge else None}

    @app.get("/health")
    def health() -> dict:
        redis = served.knowledge.cache.redis if served.knowledge else None
        return {"status": "ok", "model": served.name, "redis": None if redis is None else redis.up}

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


CONFIG_ENV, THREADS_ENV = "CTR_SERVE_CONFIG", "CTR_SERVE_TORCH_THREADS"  # handed to uvicorn's worker processes


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker: the config and torch's thread count from the parent's environment."""
    import torch

    torch.set_num_threads(int(os.environ[THREADS_ENV]))
    config = ServeConfig(**json.loads(os.environ[CONFIG_ENV]))
    return create_app(Served(config), config.max_body_bytes)


def serve(config: ServeConfig) -> None:
    """Load the run and serve it with uvicorn until interrupted; `workers` > 1: that many processes, one port."""
    import logging

    import torch
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("ctr.serve")
    if config.workers > 1:  # each worker loads the run itself; the vector cache they share is Redis
        os.environ[CONFIG_ENV], os.environ[THREADS_ENV] = json.dumps(asdict(config)), str(torch.get_num_threads())
        log.info("serving %s with %d workers on http://%s:%d", config.model, config.workers, config.host, config.port)
        uvicorn.run("ctr.serve:app_from_env", factory=True, workers=config.workers, host=config.host,
                    port=config.port, access_log=False, log_level="warning")
        return
    served = Served(config)
    log.info("serving %s (%s) on http://%s:%d", config.model, served.name, config.host, config.port)
    uvicorn.run(create_app(served, config.max_body_bytes), host=config.host, port=config.port, access_log=False,
                log_level="warning")
