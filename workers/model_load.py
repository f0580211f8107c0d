"""Loading the embedding model without holding a stopping worker hostage."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from recsys.embedding import Embedder

__all__ = ["load_model"]


async def load_model(embedder: Embedder, stop: asyncio.Event, *, worker: str) -> bool:
    """Load the model in a daemon thread; False if ``stop`` came first.

    Loading torch and the weights can take tens of seconds on a busy machine; a worker
    asked to stop meanwhile must not keep its supervisor waiting (the default executor
    would be joined at exit, so a daemon thread is used instead).
    """
    loop = asyncio.get_running_loop()
    loaded: asyncio.Future[int] = loop.create_future()

    def deliver(result: int | None, error: BaseException | None) -> None:
        if loaded.done():
            return
        if error is not None:
            loaded.set_exception(error)
        else:
            loaded.set_result(result or 0)

    def load() -> None:
        try:
            dim, error = embedder.dim, None
        except BaseException as exc:  # handed to the loop
            dim, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop may be gone (stopped meanwhile)
            loop.call_soon_threadsafe(deliver, dim, error)

    threading.Thread(target=load, name=f"{worker}-model-load", daemon=True).start()
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([loaded, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if loaded.done():
        loaded.result()  # raises a loading error
        return True
    return False
