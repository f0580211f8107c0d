"""Postgres goes away mid-stream: the enrich worker retries the same batch, never commits
past an item that is not in the table, and once Postgres is back every change is there.

Uses its own embedded Postgres (stopped and restarted here), not the session one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys import db
from recsys.embedding import SentenceTransformerEmbedder
from recsys.records import CatalogChange
from stack.embedded import EmbeddedBroker, EmbeddedPostgres
from streams.settings import Settings
from tests.conftest import make_settings
from tests.helpers import await_until
from tests.integration.enrich_harness import (
    caught_up,
    committed_total,
    enrich_worker,
    enriched_events,
    publish,
    rows,
)
from workers.enrich_worker import EnrichWorker


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path / "own-pg")
    db.apply_migrations(pg.start())
    yield pg
    pg.destroy()


def wave(start: int, n: int) -> list[CatalogChange]:
    return [
        CatalogChange(
            item_id=f"w{i:03d}",
            version=1,
            change_id=f"w{i:03d}-1",
            title=f"Film number {i}",
            categories=["Drama"],
            description=f"A story told {i} times.",
        )
        for i in range(start, start + n)
    ]


async def test_stopping_and_restarting_postgres_mid_stream_loses_no_change(
    tmp_path: Path,
    broker: EmbeddedBroker,
    own_postgres: EmbeddedPostgres,
    embedder: SentenceTransformerEmbedder,
) -> None:
    settings: Settings = make_settings(
        tmp_path,
        bootstrap_servers=broker.bootstrap,
        database_url=own_postgres.dsn(),
        db_statement_timeout_ms=3000,
    )
    async with enrich_worker(settings, embedder) as ctx:
        loop = ctx.handles.require(EnrichWorker).loop
        publish(settings, *wave(0, 10))
        await caught_up(settings)
        assert len(rows(settings)) == 10

        own_postgres.stop()
        publish(settings, *wave(10, 10))
        await await_until(
            lambda: loop.stats.retries >= 2, 90, what="the worker retrying while Postgres is down"
        )
        assert committed_total(settings) == 10  # not past the unwritten items

        assert own_postgres.start() == settings.database_url.get_secret_value()  # type: ignore[union-attr]
        await caught_up(settings, timeout_s=120)
        table = rows(settings)
        assert sorted(table) == [f"w{i:03d}" for i in range(20)]
        assert all(r["raw_embedding"] is not None for r in table.values())
        assert committed_total(settings) == 20
    events = enriched_events(settings, 20)
    assert sorted(e.item_id for e in events) == [f"w{i:03d}" for i in range(20)]
