"""The enrichment part of `streamrec demo`: which LLM the workers use, and what enrichment did.

``--llm simulated`` starts our OpenAI-compatible server in the demo process (model name
``streamrec-simulated-llm``, honest behaviour) and points the workers at it;
``--llm local`` starts the embedded local LLM (a real 135M model on this CPU, compact
prompts, grammar-constrained; see docs/local-llm.md) and points the workers at it;
``--llm none`` leaves the LLM off (every item is embedded from its raw text and each
decision is logged as ``no_endpoint``); ``--llm endpoint`` uses the configured
``STREAMREC_LLM_*`` endpoint.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from rich.table import Table

from recsys.exceptions import ConfigurationError
from recsys.records import ItemEnriched, LlmInvolvement, LlmUseCase, Record
from stack.embedded import free_port, port_is_free
from streams.kafka import consumer_config
from streams.lag import end_offsets
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics
from testkit.llm_server import SimulatedLlmServer

__all__ = ["LLM_CHOICES", "demo_llm", "enrich_report", "read_all"]

log = logging.getLogger(__name__)

LLM_CHOICES = ("none", "simulated", "local", "endpoint")

R = TypeVar("R", bound=Record)


@contextmanager
def demo_llm(
    settings: Settings, choice: str
) -> Iterator[tuple[Settings, SimulatedLlmServer | None]]:
    """Settings for the demo's LLM choice, and the simulated server while it runs.

    Raises:
        ConfigurationError: an unknown choice, or ``endpoint`` without a configured one.
    """
    if choice == "simulated":
        with SimulatedLlmServer() as server:
            yield (
                settings.with_overrides(llm_base_url=server.base_url, llm_model=server.model),
                server,
            )
    elif choice == "local":
        from stack.local_llm.wiring import embedded_llm, local_llm_overrides

        if not port_is_free("127.0.0.1", settings.llm_local_port):
            settings = settings.with_overrides(llm_local_port=free_port())
        with embedded_llm(settings) as llm:
            yield settings.with_overrides(**local_llm_overrides(settings, llm)), None
    elif choice == "none":
        yield settings.with_overrides(llm_base_url=None, llm_model=None), None
    elif choice == "endpoint":
        if not settings.llm_enabled:
            raise ConfigurationError(
                "--llm endpoint needs STREAMREC_LLM_BASE_URL and STREAMREC_LLM_MODEL"
            )
        yield settings, None
    else:
        raise ConfigurationError(f"--llm must be one of {', '.join(LLM_CHOICES)}, not {choice!r}")


def read_all(settings: Settings, topic: str, model: type[R]) -> list[R]:
    """Every record on ``topic`` (the demo's topics are small)."""
    consumer = Consumer(
        consumer_config(
            settings,
            "streamrec-demo-report",
            latency_sensitive=True,
            logger=logging.getLogger("librdkafka"),
        )
    )
    serde = AvroSerde()
    out: list[R] = []
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = end_offsets(consumer, topic, partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        seen = dict.fromkeys(partitions, 0)
        empty_polls = 0
        while any(seen[p] < ends[p] for p in partitions) and empty_polls < 20:
            messages = consumer.consume(1000, 0.5)
            empty_polls = 0 if messages else empty_polls + 1
            for msg in messages:
                part, offset = msg.partition(), msg.offset()
                if msg.error() is not None or part is None or offset is None:
                    continue
                seen[part] = max(seen[part], offset + 1)
                out.append(serde.decode(msg.value(), model))
    finally:
        consumer.close()
    return out


def _items(settings: Settings) -> dict[str, Any]:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.get_secret_value(), connect_timeout=5) as conn:
        total, eligible, deleted = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT deleted AND available "
            "AND raw_embedding IS NOT NULL), count(*) FILTER (WHERE deleted) FROM items"
        ).fetchone() or (0, 0, 0)
        statuses: dict[str, int] = dict(
            conn.execute(
                "SELECT enrichment_status, count(*) FROM items GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        cached = conn.execute("SELECT count(*) FROM enrichment_cache").fetchone()
    return {
        "total": total,
        "eligible": eligible,
        "deleted": deleted,
        "statuses": statuses,
        "cache_entries": cached[0] if cached else 0,
    }


def enrich_report(
    console: Console,
    settings: Settings,
    topics: Topics,
    workers: Sequence[str],
    server: SimulatedLlmServer | None = None,
) -> None:
    """Print items stored, enrichment statuses and LLM involvement of the enrich worker."""
    if "enrich" not in workers:
        return
    try:
        items = _items(settings)
    except psycopg.Error as exc:
        console.print(f"[yellow]enrichment: items table unavailable ({exc})[/]")
        return
    llm = settings.llm_model if settings.llm_enabled else "off"
    table = Table(title=f"enrichment (LLM: {llm})")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("items in the table (all runs)", str(items["total"]))
    table.add_row("  eligible (not deleted, available, embedded)", str(items["eligible"]))
    table.add_row("  deleted (row kept)", str(items["deleted"]))
    for status, n in items["statuses"].items():
        table.add_row(f"  stored with status {status}", str(n))
    events = read_all(settings, topics.catalog_enriched.name, ItemEnriched)
    for status, n in sorted(Counter(str(e.enrichment_status) for e in events).items()):
        table.add_row(f"this run, catalog.enriched {status}", str(n))
    if not events and items["total"]:
        table.add_row("this run, catalog.enriched (versions already stored: nothing to do)", "0")
    log_records = [
        r
        for r in read_all(settings, topics.llm_log.name, LlmInvolvement)
        if r.use_case == LlmUseCase.ENRICH
    ]
    for decision, n in sorted(Counter(r.decision for r in log_records).items()):
        table.add_row(f"this run, rec.llm-log enrich {decision}", str(n))
    calls = [r for r in log_records if r.called]
    table.add_row("LLM calls (valid answers)", f"{len(calls)} ({sum(1 for r in calls if r.used)})")
    table.add_row("LLM cache hits", str(sum(1 for r in log_records if r.cache_hit)))
    tokens = f"{sum(r.tokens_in for r in calls)} / {sum(r.tokens_out for r in calls)}"
    table.add_row("LLM tokens in / out", tokens)
    table.add_row("enrichment cache entries (all runs)", str(items["cache_entries"]))
    if server is not None:
        table.add_row(f"requests seen by {server.model}", str(server.calls_for("enrichment")))
    console.print(table)
