"""Where an enriched item's time goes, stage by stage, each stage run alone.

    python -m benchmarks enrich_profile [--items 2000] [--batch-size 64]

The enrich worker overlaps its stages (the model runs in a thread while the event loop
decodes, cleans, hashes and writes), so its own timings cannot say what each stage costs.
Here each runs by itself over the same synthetic catalog, on an embedded Postgres of its
own: Avro decode, text building (with and without the injection cleaning of
``embeddable``), content hash, tokenisation, the model's forward pass, the records the
worker emits (``catalog.enriched`` + ``rec.llm-log``, built and Avro-encoded), what the
embedding-based instruction scorer would cost per item if enrichment ran it (it does
not: serving scores the text it quotes), and the item writes in chunks of ``--chunk``
(the store's versioned upserts, psycopg pipeline mode) — online, into the table with its
two HNSW indexes; in backfill mode, without them; then the index build that ends a
backfill. Postgres's own CPU is read from /proc for every write stage, since the server
does the HNSW work.

Last line: wall and CPU microseconds per item for each stage (``us_per_item``,
``cpu_us_per_item``: this process, all threads) and the Postgres server's CPU per item
of each write stage (``pg_cpu_us_per_item``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import embedded_stack, emit
from recsys import db
from recsys.embedding import SentenceTransformerEmbedder, resolve_model
from recsys.enrichment import content_hash, raw_text
from recsys.enrichment.events import item_event
from recsys.enrichment.text import normalise_text
from recsys.items import ItemRecord
from recsys.items.backfill import VectorIndexes
from recsys.items.pgvector import PgItemStore
from recsys.records import CatalogChange, EnrichmentStatus, LlmInvolvement, LlmUseCase, utcnow
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from recsys.textsafety.instruction import InstructionScorer
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics

_TICK = os.sysconf("SC_CLK_TCK")
PG_DATA = Path(".")


def postgres_cpu_s(data_dir: Path) -> float:
    """CPU seconds used so far by one Postgres server: its postmaster and children."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(entry.name) == postmaster or int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall s, this process's CPU s, all threads) of ``fn()``."""
    cpu, start = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def old_raw_text(change: CatalogChange) -> str:
    """The raw text without the cleaning (``embeddable``): what it cost before issue 14."""
    parts = [change.title, ", ".join(change.categories), change.description]
    out = []
    for part in parts:
        part = normalise_text(part)
        if part:
            out.append(part if part[-1] in ".!?" else part + ".")
    return " ".join(out)


def records_for(
    changes: list[CatalogChange], vectors: np.ndarray, model: str, version: int = 1
) -> list[ItemRecord]:
    return [
        ItemRecord(
            item_id=c.item_id,
            version=version,
            change_id=f"{c.change_id}-{version}",
            content_hash=content_hash(c),
            title=c.title,
            categories=tuple(c.categories),
            description=c.description,
            attributes=dict(c.attributes),
            available=True,
            raw_embedding=v,
            enriched_embedding=v,
            embedding_model=model,
            embedding_dim=int(v.shape[0]),
            enrichment_status=EnrichmentStatus.LLM_OFF,
            enrichment_error="no_endpoint",
            enriched_at=utcnow(),
            occurred_at=c.occurred_at,
        )
        for c, v in zip(changes, vectors, strict=True)
    ]


async def write_stage(
    store: PgItemStore, records: list[ItemRecord], chunk: int
) -> tuple[float, float, float]:
    """(wall s, this process's CPU s, Postgres CPU s) to write ``records`` in chunks."""
    pg, cpu, start = postgres_cpu_s(PG_DATA), time.process_time(), time.perf_counter()
    for i in range(0, len(records), chunk):
        await store.apply(records[i : i + chunk])
    return (
        time.perf_counter() - start,
        time.process_time() - cpu,
        postgres_cpu_s(PG_DATA) - pg,
    )


async def writes(
    dsn: str, records: list[ItemRecord], chunk: int, build_memory_mb: int
) -> dict[str, tuple[float, float, float]]:
    """Per item: the online write, the backfill write and the index build ending it."""
    apool = db.async_pool(dsn, max_size=2)
    await apool.open(wait=True)
    n = len(records)
    out: dict[str, tuple[float, float, float]] = {}
    try:
        store = PgItemStore(apool)
        indexes = VectorIndexes(apool, build_memory_mb=build_memory_mb)
        wall, cpu, pg = await write_stage(store, records, chunk)
        out["online"] = (wall / n, cpu / n, pg / n)
        async with apool.connection() as conn:
            await conn.execute("TRUNCATE items")  # an empty store again
        assert await indexes.begin_backfill()
        wall, cpu, pg = await write_stage(store, records, chunk)
        out["backfill"] = (wall / n, cpu / n, pg / n)
        pg0, cpu0, start = postgres_cpu_s(PG_DATA), time.process_time(), time.perf_counter()
        assert await indexes.finish_backfill()
        out["index_build"] = (
            (time.perf_counter() - start) / n,
            (time.process_time() - cpu0) / n,
            (postgres_cpu_s(PG_DATA) - pg0) / n,
        )
    finally:
        await apool.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=256, help="items per write")
    parser.add_argument("--build-memory-mb", type=int, default=512)
    args = parser.parse_args()

    changes = SyntheticWorkload(WorkloadConfig(n_items=args.items, n_users=1)).catalog()
    n = len(changes)
    serde = AvroSerde()
    settings = Settings(topic_prefix="profile.")
    topics = Topics(settings)
    wire = [serde.encode(c, topics.catalog_changes.subject) for c in changes]
    us: dict[str, float] = {}

    cpu_us: dict[str, float] = {}

    def per_item(name: str, fn: Callable[[], Any]) -> None:
        wall, cpu = timed(fn)
        us[name] = round(wall / n * 1e6, 1)
        cpu_us[name] = round(cpu / n * 1e6, 1)

    per_item("avro_decode", lambda: [serde.decode(w, CatalogChange) for w in wire])
    per_item("text_plain", lambda: [old_raw_text(c) for c in changes])
    texts: list[str] = []
    per_item(
        "text_cleaned",
        lambda: texts.extend(raw_text(c.title, c.categories, c.description) for c in changes),
    )
    us["text_cleaning"] = round(us["text_cleaned"] - us["text_plain"], 1)
    cpu_us["text_cleaning"] = round(cpu_us["text_cleaned"] - cpu_us["text_plain"], 1)
    per_item("content_hash", lambda: [content_hash(c) for c in changes])

    embedder = SentenceTransformerEmbedder(batch_size=args.batch_size)
    embedder.embed(texts[:64])
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(embedder.name)[0], device="cpu")
    tokenise = getattr(model, "preprocess", None) or model.tokenize
    ordered = sorted(texts, key=len)
    batches = [ordered[i : i + args.batch_size] for i in range(0, n, args.batch_size)]
    per_item("tokenise", lambda: [tokenise(b) for b in batches])
    vectors = np.zeros((0, embedder.dim), dtype=np.float32)

    def encode() -> None:
        nonlocal vectors
        vectors = embedder.embed(texts)

    per_item("encode_total", encode)
    us["encode_forward"] = round(us["encode_total"] - us["tokenise"], 1)
    cpu_us["encode_forward"] = round(cpu_us["encode_total"] - cpu_us["tokenise"], 1)

    records = records_for(changes, vectors, embedder.name)

    # not a stage of enrichment: serving scores item text it quotes into a prompt (memoised
    # per process); what scoring every item's title and description here would cost
    scorer = InstructionScorer.from_embedder(embedder)
    asyncio.run(scorer.warm())
    item_texts = [f"{c.title}. {c.description}" for c in changes]
    per_item("instruction_scorer_if_run", lambda: asyncio.run(scorer.scores(item_texts)))

    def outputs() -> None:
        for r in records:
            serde.encode(item_event(r), topics.catalog_enriched.subject)
            serde.encode(
                LlmInvolvement(
                    request_id=r.change_id,
                    item_id=r.item_id,
                    use_case=LlmUseCase.ENRICH,
                    called=False,
                    used=False,
                    decision="no_endpoint",
                    fallback=True,
                    fallback_reason="no_endpoint",
                ),
                topics.llm_log.subject,
            )

    per_item("emit_records", outputs)

    with embedded_stack(with_postgres=True) as stack:
        assert stack.database_url is not None
        dsn = stack.database_url.get_secret_value()
        global PG_DATA
        PG_DATA = stack.home / "pgdata"
        db.apply_migrations(dsn)
        written = asyncio.run(writes(dsn, records, args.chunk, args.build_memory_mb))
    pg_cpu = {}
    for name, (wall, cpu, pg) in written.items():
        us[f"write_{name}"] = round(wall * 1e6, 1)
        cpu_us[f"write_{name}"] = round(cpu * 1e6, 1)
        pg_cpu[name] = round(pg * 1e6, 1)
    emit(
        {
            "benchmark": "enrich_profile",
            "items": n,
            "batch_size": args.batch_size,
            "write_chunk": args.chunk,
            "load_avg_1m": round(os.getloadavg()[0], 1),
            "us_per_item": us,
            "cpu_us_per_item": cpu_us,
            "pg_cpu_us_per_item": pg_cpu,
        }
    )


if __name__ == "__main__":
    main()
