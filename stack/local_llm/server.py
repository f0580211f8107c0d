"""The OpenAI-compatible HTTP surface of the local model (aiohttp).

* ``POST /v1/chat/completions`` — ``messages``, ``response_format`` (``json_schema``
  enforced during decoding, ``json_object``, ``text``), ``temperature``, ``top_p``,
  ``max_tokens`` / ``max_completion_tokens``, ``seed``, ``stop``,
  ``frequency_penalty``, ``presence_penalty``; ``n`` must be 1 and ``stream`` false
  (refused with a 400 otherwise, never silently ignored);
* ``GET /v1/models`` and ``GET /v1/models/{id}``; ``GET /health`` (queue length and
  running totals of tokens and prefill/decode seconds, for benchmarks).

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with
its status codes: 400 invalid request, 404 unknown model or route, 429 when the queue
is full (with ``Retry-After``), 500 on a bug. ``usage`` counts the model tokenizer's
tokens.

One model, one generation at a time, run on a worker thread (the event loop keeps
answering ``/health`` and queueing). At most ``max_queue`` requests wait; past that
a request is refused with 429 rather than piling up. A client that disconnects (its
timeout, a request deadline) cancels its request: a waiting one leaves the queue, a
running one stops at the next token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stack.local_llm.engine import Generation, LocalModel, SamplingParams
from stack.local_llm.exceptions import InvalidRequest

__all__ = ["ChatRequest", "LlmService", "create_app"]

log = logging.getLogger(__name__)

OWNER = "streamrec-local"


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text":
                raise InvalidRequest(
                    f"content part type {part.get('type')!r} is not supported (text only)",
                    param="messages",
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)


class ChatRequest(BaseModel):
    """The fields of a chat-completions request this server reads (others are ignored,
    as OpenAI-compatible servers do, except those it cannot honour: see ``check``)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)

    def check(self) -> None:
        """Refuse what this server cannot do instead of ignoring it."""
        if self.n != 1:
            raise InvalidRequest("only n=1 is supported", param="n")
        if self.stream:
            raise InvalidRequest("streaming is not supported", param="stream")

    def sampling(self, default_max_tokens: int, repeat_penalty: float) -> SamplingParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            max_tokens=self.max_completion_tokens or self.max_tokens or default_max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            repeat_penalty=repeat_penalty,
            stop=stop,
        )


def error_response(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in OpenAI's shape."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


class QueueFull(Exception):
    """Every queue slot is taken."""


class LlmService:
    """Queues requests for one :class:`LocalModel` and runs them on one worker thread."""

    def __init__(
        self,
        model: LocalModel,
        *,
        max_queue: int = 16,
        default_max_tokens: int = 512,
        repeat_penalty: float = 1.0,
    ) -> None:
        self.model = model
        self.max_queue = max_queue
        self.default_max_tokens = default_max_tokens
        self.repeat_penalty = repeat_penalty
        self.created = int(time.time())
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._turn = asyncio.Lock()
        self._pending = 0
        self._running: threading.Event | None = None
        self.served = 0
        self.totals = {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "prefill_s": 0.0,
            "decode_s": 0.0,
            "forced_tokens": 0,
            "reused_prompt_tokens": 0,
        }
        self._avg_s = 5.0

    @property
    def pending(self) -> int:
        """Requests waiting or running."""
        return self._pending

    async def complete(self, request: ChatRequest) -> tuple[Generation, float]:
        """Generate one answer; returns it and the seconds it waited for its turn.

        Raises:
            QueueFull: ``max_queue`` requests are already waiting or running.
            InvalidRequest: the request cannot be served as asked.
        """
        request.check()
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        prompt = self.model.prompt_ids(messages)
        constraint = self.model.constraint(request.response_format)
        params = request.sampling(self.default_max_tokens, self.repeat_penalty)
        if self._pending >= self.max_queue:
            raise QueueFull
        self._pending += 1
        queued = time.monotonic()
        cancel = threading.Event()
        try:
            async with self._turn:
                waited = time.monotonic() - queued
                loop = asyncio.get_running_loop()
                self._running = cancel
                future = loop.run_in_executor(
                    self._executor, self.model.generate, prompt, params, constraint, cancel
                )
                try:
                    generation = await asyncio.shield(future)
                except asyncio.CancelledError:
                    cancel.set()  # the client left: stop at the next token, free the model
                    await asyncio.wait([future])
                    raise
                finally:
                    self._running = None
        finally:
            self._pending -= 1
        self.served += 1
        self.totals["prompt_tokens"] += generation.prompt_tokens
        self.totals["completion_tokens"] += generation.completion_tokens
        self.totals["prefill_s"] += generation.prefill_s
        self.totals["decode_s"] += generation.decode_s
        self.totals["forced_tokens"] += generation.forced_tokens
        self.totals["reused_prompt_tokens"] += generation.reused_tokens
        spent = generation.prefill_s + generation.decode_s
        self._avg_s = 0.8 * self._avg_s + 0.2 * spent
        return generation, waited

    def retry_after_s(self) -> int:
        """A guess at when a slot frees up (for ``Retry-After``)."""
        return max(1, round(self._avg_s * max(1, self._pending) / 2))

    def shutdown(self) -> None:
        """Cancel the running generation (it stops at its next token) and queued ones."""
        if self._running is not None:
            self._running.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def model_card(self) -> dict[str, Any]:
        """The ``/v1/models`` entry of the served model."""
        m = self.model
        return {
            "id": m.name,
            "object": "model",
            "created": self.created,
            "owned_by": OWNER,
            "meta": {
                "file": m.file.path.name,
                "sha256": m.file.sha256,
                "parameters": m.n_params,
                "context_length": m.n_ctx,
                "load_s": round(m.load_s, 1),
                "constrained_decoding": "llguidance",
            },
        }


# ---- HTTP -----------------------------------------------------------------------------
SERVICE = web.AppKey("service", LlmService)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error_response(404, f"no route {request.method} {request.path}", code="not_found")
    except web.HTTPMethodNotAllowed:
        return error_response(405, f"{request.method} is not allowed on {request.path}")
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("internal error on %s", request.path)
        return error_response(500, f"internal error: {exc}", kind="server_error")


async def _chat(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        body = await request.json()
    except ValueError:
        return error_response(400, "the request body is not JSON")
    if not isinstance(body, dict):
        return error_response(400, "the request body must be a JSON object")
    try:
        chat = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return error_response(400, f"{where}: {first['msg']}", param=where or None)
    name = service.model.name
    if chat.model is not None and chat.model != name:
        return error_response(
            404,
            f"the model {chat.model!r} does not exist; this server serves {name!r}",
            param="model",
            code="model_not_found",
        )
    started = time.monotonic()
    try:
        generation, waited = await service.complete(chat)
    except InvalidRequest as exc:
        return error_response(400, exc.message, param=exc.param, code=exc.code)
    except QueueFull:
        retry = service.retry_after_s()
        return error_response(
            429,
            f"{service.max_queue} requests are already queued for the model; retry later",
            kind="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": str(retry)},
        )
    total = generation.prompt_tokens + generation.completion_tokens
    log.info(
        "chat %s: %d+%d tokens (%d prompt tokens cached, %d forced), %s, waited %.0f ms, "
        "prefill %.0f ms, decode %.0f ms (%.1f tok/s)",
        (chat.response_format or {}).get("type", "text"),
        generation.prompt_tokens,
        generation.completion_tokens,
        generation.reused_tokens,
        generation.forced_tokens,
        generation.finish_reason,
        waited * 1000,
        generation.prefill_s * 1000,
        generation.decode_s * 1000,
        generation.completion_tokens / generation.decode_s if generation.decode_s > 0 else 0.0,
    )
    return web.json_response(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "system_fingerprint": f"sha256:{service.model.file.sha256[:16]}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": generation.text},
                    "finish_reason": generation.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": generation.completion_tokens,
                "total_tokens": total,
            },
            "timings": {
                "queued_ms": round(waited * 1000, 1),
                "prefill_ms": round(generation.prefill_s * 1000, 1),
                "decode_ms": round(generation.decode_s * 1000, 1),
                "total_ms": round((time.monotonic() - started) * 1000, 1),
            },
        }
    )


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [request.app[SERVICE].model_card()]})


async def _model(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if request.match_info["model"] != service.model.name:
        return error_response(
            404,
            f"the model {request.match_info['model']!r} does not exist",
            param="model",
            code="model_not_found",
        )
    return web.json_response(service.model_card())


async def _health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return web.json_response(
        {
            "status": "ok",
            "model": service.model.name,
            "pending": service.pending,
            "served": service.served,
            "totals": service.totals,
        }
    )


def create_app(service: LlmService) -> web.Application:
    """The aiohttp application over a loaded model's service."""
    app = web.Application(middlewares=[_errors], client_max_size=8 * 1024 * 1024)
    app[SERVICE] = service
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model}", _model)
    app.router.add_get("/health", _health)

    async def _shutdown(app: web.Application) -> None:
        app[SERVICE].shutdown()

    app.on_shutdown.append(_shutdown)
    return app
