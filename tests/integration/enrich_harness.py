"""Running the real enrich worker in-process and looking at what it did (rows, topics)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from confluent_kafka import Consumer, TopicPartition
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row

from recsys.llm.client import LlmClient
from recsys.records import CatalogChange, ItemEnriched, LlmInvolvement, Record
from streams import admin
from streams.kafka import consumer_config
from streams.lag import topic_sizes
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics
from tests.helpers import await_until, committed_offsets, read_topic
from workers.bootstrap import Context, Overrides, bootstrap
from workers.enrich_worker import EnrichWorker
from workers.runtime import serve_forever

R = TypeVar("R", bound=Record)

#: Every column that a replay must leave untouched (vectors compared as text).
SNAPSHOT_SQL = """
SELECT item_id, version, change_id, deleted, available, title, categories, description,
       attributes::text, summary, themes, mood, audience, tags, content_hash,
       raw_embedding::text, enriched_embedding::text, embedding_model, embedding_dim,
       prompt_version, llm_model, enrichment_status, enrichment_error, enriched_at,
       occurred_at, updated_at
FROM items ORDER BY item_id
"""


def dsn_of(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url.get_secret_value()


def margins(settings: Settings) -> set[str]:
    """The catalog sentences ``instruction_margins`` holds (any scorer version)."""
    with psycopg.connect(dsn_of(settings)) as conn:
        return {r[0] for r in conn.execute("SELECT sentence FROM instruction_margins")}


def rows(settings: Settings) -> dict[str, dict[str, Any]]:
    """The items table by item_id (vectors as numpy arrays)."""
    with psycopg.connect(dsn_of(settings)) as conn:
        register_vector(conn)
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM items")
            out = {}
            for row in cur.fetchall():
                for col in ("raw_embedding", "enriched_embedding"):
                    if row[col] is not None:
                        row[col] = row[col].to_numpy()
                out[row["item_id"]] = row
            return out


def snapshot(settings: Settings) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn_of(settings)) as conn:
        return conn.execute(SNAPSHOT_SQL).fetchall()


def publish(settings: Settings, *changes: CatalogChange) -> None:
    with RecordProducer(settings) as producer:
        for change in changes:
            producer.publish_catalog_change(change)


def decoded(settings: Settings, topic: str, model: type[R], expected: int) -> list[R]:
    serde = AvroSerde()
    return [serde.decode(m.value(), model) for m in read_topic(settings, topic, expected, 30)]


def llm_log(settings: Settings, expected: int) -> list[LlmInvolvement]:
    return decoded(settings, Topics(settings).llm_log.name, LlmInvolvement, expected)


def enriched_events(settings: Settings, expected: int) -> list[ItemEnriched]:
    return decoded(settings, Topics(settings).catalog_enriched.name, ItemEnriched, expected)


def group(settings: Settings) -> str:
    return f"{settings.topic_prefix}streamrec-enrich"


def committed_total(settings: Settings) -> int:
    offsets = committed_offsets(settings, group(settings), Topics(settings).catalog_changes.name)
    return sum(max(0, o) for o in offsets.values())


def end_total(settings: Settings) -> int:
    topic = Topics(settings).catalog_changes.name
    return topic_sizes(settings, [topic])[topic]


async def caught_up(settings: Settings, timeout_s: float = 90) -> None:
    """Wait until the worker committed everything on catalog.changes."""
    await await_until(
        lambda: committed_total(settings) == end_total(settings) > 0,
        timeout_s,
        interval_s=0.3,
        what="the enrich worker to commit all of catalog.changes",
    )


def rewind(settings: Settings) -> None:
    """Commit offset 0 on every partition for the (stopped) worker's group: a full replay."""
    topic = Topics(settings).catalog_changes.name
    consumer = Consumer(
        consumer_config(
            settings,
            group(settings),
            latency_sensitive=True,
            logger=logging.getLogger("librdkafka"),
        )
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in parts], asynchronous=False)
    finally:
        consumer.close()


@asynccontextmanager
async def enrich_worker(
    settings: Settings, embedder: Any, llm_client: LlmClient | None = None
) -> AsyncIterator[Context]:
    """The enrich worker running in this event loop until the block ends."""
    admin.ensure_topics(settings)
    ctx = bootstrap(settings, Overrides(embedder=embedder, llm_client=llm_client))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("enrich", ctx, stop))
    try:
        await await_until(
            lambda: ctx.handles.get(EnrichWorker) is not None or task.done(),
            60,
            what="worker start",
        )
        if task.done():
            task.result()
        yield ctx
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
