"""Running one worker: the start-up checks every worker shares, then its loop.

A worker module exposes ``async def run(ctx, stop)``; this module resolves it by name,
starts its metrics/health endpoint (:class:`workers.observe.Observer`), checks that the
record classes match ``schemas/``, that co-partitioned topics agree, logs the capability
summary, and runs it until SIGINT/SIGTERM sets ``stop``.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import cast

from recsys import records
from recsys.exceptions import ConfigurationError
from streams import admin
from streams.schema_check import check_all
from streams.settings import WORKER_NAMES, Settings
from streams.tracing import setup_tracing
from workers.bootstrap import Context, Overrides, bootstrap
from workers.capabilities import log_capabilities
from workers.observe import Observer

__all__ = [
    "ALL_RECORDS",
    "WorkerMain",
    "available_workers",
    "freeze_startup_heap",
    "resolve_worker",
    "run_worker",
    "serve_forever",
]

log = logging.getLogger(__name__)

WorkerMain = Callable[[Context, asyncio.Event], Awaitable[None]]

#: Every record class that has a schema; checked against schemas/ at start-up.
ALL_RECORDS: tuple[type[records.Record], ...] = (
    records.CatalogChange,
    records.ItemEnriched,
    records.UserEvent,
    records.RecRequest,
    records.RecResponse,
    records.LlmInvolvement,
    records.FeedbackExample,
    records.Evidence,
    records.RecommendedItem,
    records.ConversationTurn,
    records.PreferenceSignal,
    records.DialogueReply,
)


def resolve_worker(name: str) -> WorkerMain:
    """The ``run`` coroutine of worker ``name``."""
    if name not in WORKER_NAMES:
        raise ConfigurationError(f"unknown worker {name!r}; known: {', '.join(WORKER_NAMES)}")
    try:
        module = importlib.import_module(f"workers.{name}_worker")
    except ModuleNotFoundError as exc:
        if exc.name == f"workers.{name}_worker":
            raise ConfigurationError(f"worker {name!r} is not part of this build") from exc
        raise
    return cast(WorkerMain, module.run)


def available_workers() -> list[str]:
    """Workers whose module exists in this build."""
    out = []
    for name in WORKER_NAMES:
        if importlib.util.find_spec(f"workers.{name}_worker") is not None:
            out.append(name)
    return out


def preflight(settings: Settings, worker: str) -> None:
    """Checks every worker runs before consuming anything."""
    check_all(ALL_RECORDS)
    admin.probe(settings)
    admin.check_co_partitioning(settings)
    log_capabilities(settings, worker)


async def serve_forever(
    name: str,
    ctx: Context,
    stop: asyncio.Event | None = None,
    *,
    install_signals: bool = False,
    observer: Observer | None = None,
) -> None:
    """Run worker ``name`` with ``ctx`` until ``stop`` is set (or a signal arrives).

    With an ``observer``, its health/metrics task runs beside the worker.
    """
    main = resolve_worker(name)
    stop = stop or asyncio.Event()
    if install_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    watching = asyncio.create_task(observer.watch(ctx, stop)) if observer else None
    try:
        await main(ctx, stop)
    finally:
        if watching is not None:
            watching.cancel()
        await ctx.aclose()


def freeze_startup_heap() -> int:
    """Take what start-up built out of the cyclic garbage collector's full collections.

    Modules, classes, schemas, settings and clients live as long as the process, yet
    every full (generation 2) collection walks them again: about 67,000 objects in a
    worker, and the users worker's stream of new states sets off a full collection
    about once a second. Frozen, they are skipped (still freed by reference counting
    if ever dropped); the users worker's full collections then pause it 34 ms at the
    median instead of 57, at most 98 ms instead of 180 (docs/workers/users.md). Call it
    once, after start-up and before the loop.

    Returns:
        The number of objects frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def run_worker(name: str, settings: Settings, overrides: Overrides | None = None) -> None:
    """Entry point of ``streamrec worker NAME``: endpoints, preflight, tracing, run until
    signalled."""
    resolve_worker(name)
    observer = Observer(name, settings)
    observer.start_endpoints()
    try:
        tracing = setup_tracing(settings, service=f"streamrec-{name}")
        log.info("%s: tracing %s", name, tracing)
        observer.health.set("started", False, "preflight: schemas, broker, topics")
        preflight(settings, name)
        ctx = bootstrap(settings, overrides)
        freeze_startup_heap()
        asyncio.run(serve_forever(name, ctx, install_signals=True, observer=observer))
    finally:
        observer.stop_endpoints()
