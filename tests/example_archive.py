"""A small archive as the archive worker would leave it, written straight to Avro files.

Synthetic user histories, logged requests with scripted production responses (every
third LLM-reranked, with its LLM log), feedback examples, and the users' next actions
(:meth:`SyntheticWorkload.outcomes`) — enough for `streamrec replay --policy` and
`streamrec evaluate` without a broker (the worked example's offline half).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from recsys.archive import ArchivedMessage, ArchiveWriter
from recsys.records import (
    FeedbackExample,
    LlmInvolvement,
    LlmUseCase,
    RecommendedItem,
    Record,
    RecResponse,
    Route,
    WarmthBucket,
)
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from streams.producer import registry_from_settings
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics, TopicSpec

__all__ = ["ExampleArchive", "write_example_archive"]


@dataclass(frozen=True)
class ExampleArchive:
    """What was written."""

    root: Path
    requests: int
    llm_used: int
    first_request_at: datetime
    last_request_at: datetime


def _write(
    writer: ArchiveWriter,
    serde: AvroSerde,
    spec: TopicSpec,
    rows: Sequence[tuple[str, datetime, Record]],
) -> None:
    assert rows, spec.name
    schema = serde.codec(type(rows[0][2])).schema
    schema_id = serde.registry.id_for(spec.subject, schema)
    writer.register(spec.name, schema)
    ordered = sorted(rows, key=lambda r: r[1])
    for offset, (key, at, record) in enumerate(ordered):
        writer.write(
            ArchivedMessage(
                topic=spec.name,
                partition=0,
                offset=offset,
                timestamp_ms=int(at.timestamp() * 1000),
                key=key,
                headers=[],
                schema_id=schema_id,
                value=record.model_dump(mode="python"),
                value_schema=schema,
            )
        )


def write_example_archive(
    settings: Settings, n_requests: int = 30, *, user_events: bool = True
) -> ExampleArchive:
    """Write the archive under ``settings.archive_root`` (topic names with its prefix);
    without ``user_events`` relevance can only come from the feedback examples (the
    archive worker's default: ``archive_user_events`` is off)."""
    topics = Topics(settings)
    workload = SyntheticWorkload(WorkloadConfig(n_items=60, n_users=15, seed=3))
    history = list(workload.events())
    requests = workload.requests(n_requests, new_user_share=0.2)
    outcomes = workload.outcomes(requests)
    responses, llm_log, examples = [], [], []
    for i, request in enumerate(requests):
        llm = i % 3 == 0
        items = [f"item-{(i * 7 + j) % 60:05d}" for j in range(10)]
        response = RecResponse(
            request_id=request.request_id,
            user_id=request.user_id,
            route=Route.CF,
            warmth_bucket=WarmthBucket.WARM if i % 2 else WarmthBucket.COLD,
            propensity=0.5 if llm else 1.0,
            llm_used=llm,
            latency_ms=20.0 + i,
            produced_at=request.requested_at,
            items=[
                RecommendedItem(item_id=it, rank=n, score=1.0, source="cf")
                for n, it in enumerate(items, 1)
            ],
        )
        responses.append((request.user_id, request.requested_at, response))
        if llm:
            llm_log.append(
                (
                    request.request_id,
                    request.requested_at,
                    LlmInvolvement(
                        request_id=request.request_id,
                        user_id=request.user_id,
                        use_case=LlmUseCase.RERANK,
                        called=True,
                        used=True,
                        decision="called",
                        cost_usd=0.01,
                    ),
                )
            )
        # one example per shown item, as the feedback worker emits them
        acted = {e.item_id for e in outcomes if e.user_id == request.user_id}
        for rank, item in enumerate(items, 1):
            examples.append(
                (
                    request.user_id,
                    request.requested_at,
                    FeedbackExample(
                        example_id=f"{request.request_id}:{item}",
                        request_id=request.request_id,
                        user_id=request.user_id,
                        item_id=item,
                        rank=rank,
                        route="CF",
                        warmth_bucket=response.warmth_bucket.value,
                        llm_used=llm,
                        propensity=response.propensity,
                        clicked=item in acted,
                        impression_at=response.produced_at,
                    ),
                )
            )
    serde = AvroSerde(registry_from_settings(settings))
    writer = ArchiveWriter(settings.archive_root, roll_bytes=1 << 26, roll_s=float("inf"))
    events = [(e.user_id, e.occurred_at, e) for e in [*history, *outcomes]]
    if user_events:
        _write(writer, serde, topics.user_events, events)
    _write(writer, serde, topics.rec_requests, [(r.user_id, r.requested_at, r) for r in requests])
    _write(writer, serde, topics.rec_responses, responses)
    _write(writer, serde, topics.llm_log, llm_log)
    _write(writer, serde, topics.feedback_examples, examples)
    writer.close()
    return ExampleArchive(
        root=settings.archive_root,
        requests=len(requests),
        llm_used=len(llm_log),
        first_request_at=min(r.requested_at for r in requests),
        last_request_at=max(r.requested_at for r in requests),
    )
