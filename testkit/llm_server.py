"""Our OpenAI-compatible HTTP server: the scripted LLM of the tests and the demo.

It speaks enough of the protocol for the ``openai`` SDK: ``POST /v1/chat/completions``
(with ``response_format`` json_schema) and ``GET /v1/models``. Its model name contains
"simulated" wherever it is reported, so nobody mistakes it for a real model.

Structured calls are dispatched on the json_schema ``name`` to a handler registry
(:mod:`testkit.simulated_llm`; ``enrichment`` and serving's ``rerank``, ``intent`` and
``explanation`` from :mod:`testkit.simulated_serving` are built in), so other use cases add
their own handlers with :meth:`SimulatedLlmServer.register` without touching this file.

Behaviour is scripted per test, in process (:meth:`SimulatedLlmServer.set_behaviour`)
or over HTTP (``POST /_control/behaviour``):

* server-level modes, the same for every use case: ``honest``; ``slow`` (answers
  honestly after ``delay_s``); ``http_429``; ``http_500``; ``http_503``;
  ``malformed_json`` (a truncated JSON answer); ``empty`` (no content);
* any other mode is handed to the use case's handler (e.g. ``out_of_taxonomy``,
  ``long_summary``, ``extra_fields``, ``obeys_injections`` for enrichment;
  ``hallucinate``, ``duplicates``, ``empty_ranking``, ``obey_injections`` for serving);
* ``fail_first=N, fail_with=MODE``: the next N calls fail that way, then the mode applies.

Every request is recorded (messages, model, temperature, response_format, …) and
counted, and the peak number of requests in flight is kept, for assertions.

Run it standalone with ``python -m testkit.llm_standalone --port 8089 --mode honest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from types import TracebackType
from typing import Any, Self

from testkit.simulated_dialogue import DIALOGUE_HANDLERS
from testkit.simulated_llm import Handler, enrichment_answer, judge_answer
from testkit.simulated_serving import SERVING_HANDLERS

__all__ = [
    "DEFAULT_HANDLERS",
    "SERVER_MODES",
    "SIMULATED_MODEL",
    "Behaviour",
    "RecordedRequest",
    "SimulatedLlmServer",
]

log = logging.getLogger(__name__)

#: The model name the server reports (and the demo configures).
SIMULATED_MODEL = "streamrec-simulated-llm"

#: Modes the server itself implements; any other mode goes to the handler.
SERVER_MODES = ("honest", "slow", "http_429", "http_500", "http_503", "malformed_json", "empty")

#: Handlers every server starts with, by json_schema name.
DEFAULT_HANDLERS: Mapping[str, Handler] = {
    "enrichment": enrichment_answer,
    "justification_judge": judge_answer,
    **SERVING_HANDLERS,
    **DIALOGUE_HANDLERS,
}


@dataclass(frozen=True)
class Behaviour:
    """How the server answers from now on."""

    mode: str = "honest"
    delay_s: float = 30.0
    fail_first: int = 0
    fail_with: str = "http_500"


@dataclass(frozen=True)
class RecordedRequest:
    """One chat.completions request as received."""

    model: str | None
    messages: list[dict[str, Any]]
    temperature: float | None
    response_format: dict[str, Any] | None
    schema_name: str | None
    max_tokens: int | None
    answered_as: str
    received_at: float = field(default_factory=time.time)

    def prompt_text(self) -> str:
        """All message contents joined (for "the prompt contains …" assertions)."""
        return "\n".join(str(m.get("content") or "") for m in self.messages)


def _words(text: str) -> int:
    return len(text.split())


class SimulatedLlmServer:
    """An OpenAI-compatible server with scripted behaviour, in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        behaviour: Behaviour | None = None,
        handlers: Mapping[str, Handler] | None = None,
        model: str = SIMULATED_MODEL,
    ) -> None:
        if "simulated" not in model:
            raise ValueError("the simulated server's model name must say 'simulated'")
        self.host = host
        self.port = port
        self.model = model
        self._handlers: dict[str, Handler] = {**DEFAULT_HANDLERS, **(handlers or {})}
        self._behaviour = behaviour or Behaviour()
        self._fail_left = self._behaviour.fail_first
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._inflight = 0
        self._max_inflight = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ---- scripting ----------------------------------------------------------------------
    def register(self, schema_name: str, handler: Handler) -> None:
        """Answer structured calls whose json_schema name is ``schema_name`` with ``handler``."""
        with self._lock:
            self._handlers[schema_name] = handler

    def set_behaviour(
        self,
        mode: str | None = None,
        *,
        fail_first: int = 0,
        fail_with: str = "http_500",
        delay_s: float | None = None,
    ) -> Behaviour:
        """Change how the next calls are answered (see the module docstring)."""
        with self._lock:
            current = self._behaviour
            self._behaviour = replace(
                current,
                mode=mode if mode is not None else current.mode,
                fail_first=fail_first,
                fail_with=fail_with,
                delay_s=delay_s if delay_s is not None else current.delay_s,
            )
            self._fail_left = fail_first
            return self._behaviour

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviour

    def reset(self) -> None:
        """Back to honest, with no recorded requests."""
        with self._lock:
            self._behaviour = Behaviour()
            self._fail_left = 0
            self._requests.clear()
            self._max_inflight = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> int:
        """Number of chat.completions requests received."""
        with self._lock:
            return len(self._requests)

    def calls_for(self, schema_name: str) -> int:
        """Requests whose json_schema name was ``schema_name``."""
        with self._lock:
            return sum(1 for r in self._requests if r.schema_name == schema_name)

    @property
    def max_inflight(self) -> int:
        """The most requests that were being answered at the same time."""
        with self._lock:
            return self._max_inflight

    # ---- HTTP -----------------------------------------------------------------------------
    def app(self) -> Any:
        """The aiohttp application (for in-process or standalone serving)."""
        from aiohttp import web

        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/_control/behaviour", self._control_behaviour)
        app.router.add_post("/_control/reset", self._control_reset)
        app.router.add_get("/_control/requests", self._control_requests)
        return app

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": self.model, "object": "model", "created": 0, "owned_by": "streamrec"}
                ],
            }
        )

    def _plan(self) -> str:
        with self._lock:
            if self._fail_left > 0:
                self._fail_left -= 1
                return self._behaviour.fail_with
            return self._behaviour.mode

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the request body is not JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "messages must be a list", "invalid_request_error")
        fmt = body.get("response_format")
        schema_name: str | None = None
        schema: dict[str, Any] = {}
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            js = fmt.get("json_schema") or {}
            schema_name, schema = js.get("name"), js.get("schema") or {}
        plan = self._plan()
        record = RecordedRequest(
            model=body.get("model"),
            messages=body["messages"],
            temperature=body.get("temperature"),
            response_format=fmt if isinstance(fmt, dict) else None,
            schema_name=schema_name,
            max_tokens=body.get("max_tokens") or body.get("max_completion_tokens"),
            answered_as=plan,
        )
        with self._lock:
            self._requests.append(record)
            self._inflight += 1
            self._max_inflight = max(self._max_inflight, self._inflight)
        try:
            if plan == "slow":
                await self._sleep(self.behaviour.delay_s)
                plan = "honest"
            if plan.startswith("http_"):
                status = int(plan.removeprefix("http_"))
                kind = "rate_limit_exceeded" if status == 429 else "server_error"
                return _error(status, f"simulated {status}", kind)
            if schema_name is None:
                content = f"(simulated model) received {len(body['messages'])} message(s)"
            else:
                handler = self._handlers.get(schema_name)
                if handler is None:
                    return _error(
                        400, f"no simulated handler for schema {schema_name!r}", "invalid_request"
                    )
                mode = plan if plan not in SERVER_MODES else "honest"
                content = json.dumps(handler(body["messages"], schema, mode))
            if plan == "malformed_json":
                content = content[: max(1, len(content) // 2)]
            elif plan == "empty":
                content = ""
            prompt_words = sum(_words(str(m.get("content") or "")) for m in body["messages"])
            return web.json_response(
                {
                    "id": f"chatcmpl-sim-{uuid.uuid4().hex[:12]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model") or self.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    # word counts: a transparent stand-in for a tokenizer
                    "usage": {
                        "prompt_tokens": prompt_words,
                        "completion_tokens": _words(content),
                        "total_tokens": prompt_words + _words(content),
                    },
                }
            )
        finally:
            with self._lock:
                self._inflight -= 1

    async def _sleep(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _control_behaviour(self, request: Any) -> Any:
        from aiohttp import web

        data = await request.json()
        behaviour = self.set_behaviour(
            data.get("mode"),
            fail_first=int(data.get("fail_first", 0)),
            fail_with=str(data.get("fail_with", "http_500")),
            delay_s=data.get("delay_s"),
        )
        return web.json_response(asdict(behaviour))

    async def _control_reset(self, request: Any) -> Any:
        from aiohttp import web

        self.reset()
        return web.json_response({"ok": True})

    async def _control_requests(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response([asdict(r) for r in self.requests])

    # ---- lifecycle ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """What to give the SDK / ``STREAMREC_LLM_BASE_URL``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout_s: float = 10.0) -> str:
        """Serve in a background thread; return the base URL."""
        if self._thread is not None:
            return self.base_url
        if self.port == 0:
            with socket.socket() as sock:
                sock.bind((self.host, 0))
                self.port = sock.getsockname()[1]
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="simulated-llm", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            self.stop()
            raise RuntimeError(f"simulated LLM server did not start: {self._error}")
        log.info("simulated LLM (%s) at %s", self.model, self.base_url)
        return self.base_url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        from aiohttp import web

        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            self.app(), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop serving (pending slow answers are cut short)."""
        loop, thread = self._loop, self._thread
        if loop is not None and self._stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stopping.set)
        if thread is not None:
            thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _error(status: int, message: str, kind: str) -> Any:
    from aiohttp import web

    return web.json_response(
        {"error": {"message": message, "type": kind, "code": kind}}, status=status
    )
