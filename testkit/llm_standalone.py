"""``python -m testkit.llm_standalone``: the simulated LLM as a process of its own.

Handlers beyond the built-in ones come from ``--plugin MODULE:FUNCTION`` (called with
the server, e.g. to ``register`` rerank or intent handlers). Behaviour can be changed
while it runs with ``POST /_control/behaviour``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Sequence
from typing import Any

from testkit.llm_server import Behaviour, SimulatedLlmServer

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m testkit.llm_standalone``: serve until interrupted."""
    from aiohttp import web

    parser = argparse.ArgumentParser(description="streamrec's simulated OpenAI-compatible LLM")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--mode", default="honest", help="honest, slow, http_429, …")
    parser.add_argument("--delay-s", type=float, default=30.0, help="delay of the slow mode")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="call FUNCTION(server) to register more handlers (repeatable)",
    )
    args = parser.parse_args(argv)
    server = SimulatedLlmServer(
        args.host, args.port, behaviour=Behaviour(mode=args.mode, delay_s=args.delay_s)
    )
    for spec in args.plugin:
        module_name, _, func_name = spec.partition(":")
        getattr(importlib.import_module(module_name), func_name or "register")(server)

    async def on_startup(app: Any) -> None:
        server._stopping = asyncio.Event()

    async def on_shutdown(app: Any) -> None:
        if server._stopping is not None:
            server._stopping.set()

    app = server.app()
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    print(f"simulated LLM {server.model} at {server.base_url}", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, handler_cancellation=True)


if __name__ == "__main__":
    main()
