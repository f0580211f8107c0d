"""Worker `users` writing each batch in small chunks (the next chunk folded while the
writer thread stores the previous one), with its Postgres connections cut again and again
mid-stream: every cut fails a chunk, the batch is retried with its earlier chunks already
durable, and the end state — read model, ``user_events``, co-visitation — equals the
offline computation exactly."""

from __future__ import annotations

import asyncio

import psycopg

from streams import admin
from streams.settings import Settings
from tests.helpers import await_until
from tests.integration.users_harness import (
    USERS_OVERRIDES,
    assert_exact,
    caught_up,
    make_log,
    publish,
    stored_events,
)
from workers.bootstrap import bootstrap
from workers.runtime import serve_forever
from workers.users_worker import UsersWorker


def _cut_connections(dsn: str) -> int:
    """Terminate every other backend of this (per-test) database: the worker's."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


async def test_chunked_writes_stay_exact_when_postgres_connections_are_cut(
    settings: Settings,
) -> None:
    # a batch of up to 200 events written 7 at a time: a user's events span chunks
    s = settings.with_overrides(**USERS_OVERRIDES | {"users_batch_size": 200}, users_write_chunk=7)
    admin.ensure_topics(s)
    log = make_log(n_users=15, n_events=900, seed=23)
    assert s.database_url is not None
    dsn = s.database_url.get_secret_value()
    ctx = bootstrap(s)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("users", ctx, stop))
    cuts = 0
    try:
        await await_until(lambda: task.done() or ctx.handles.get(UsersWorker) is not None, 60, 0.1)
        handle = ctx.handles.require(UsersWorker)
        publish(s, log)
        distinct = len({e.event_id for e in log})
        for fraction in (0.15, 0.35, 0.55, 0.75):
            await await_until(
                lambda f=fraction: task.done() or len(stored_events(dsn)) >= f * distinct,
                120,
                0.02,
                what=f"{fraction:.0%} of the events stored",
            )
            assert not task.done()
            cuts += _cut_connections(dsn) > 0
        await await_until(
            lambda: task.done() or caught_up(dsn, log, s), 180, 0.5, what="users caught up"
        )
        assert not task.done()
        stats = handle.updater.stats
        assert stats.writes > 2 * stats.batches  # batches were written in several chunks
        assert cuts == 4 and handle.loop.stats.retries >= 1  # the cuts failed batches
        assert_exact(dsn, log, s)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
