"""Worker `feedback` on the real broker and Postgres: the join is exact on a scripted
session with duplicate, early and late events; a full re-delivery (a fresh consumer
group over the same state) emits nothing twice; bad input on both inputs is
dead-lettered while the worker keeps going."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from recsys.records import (
    EventType,
    FeedbackExample,
    RecommendedItem,
    RecResponse,
    Route,
    UserEvent,
    WarmthBucket,
)
from streams import admin
from streams.dlq import parse_dlq_headers
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.settings import Settings
from testkit.poison import poison_messages
from tests.helpers import await_until, read_topic
from workers.bootstrap import Overrides, bootstrap
from workers.feedback_worker import FeedbackWorker
from workers.runtime import serve_forever

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
WINDOW = 600


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def response(rid: str, user: str, items: list[str], seconds: float) -> RecResponse:
    return RecResponse(
        request_id=rid,
        user_id=user,
        route=Route.CONTENT,
        warmth_bucket=WarmthBucket.COLD,
        propensity=0.5,
        llm_used=True,
        prompt_version="p3",
        llm_model="m1",
        latency_ms=42.0,
        produced_at=at(seconds),
        items=[
            RecommendedItem(item_id=i, rank=n, score=1.0, source="t")
            for n, i in enumerate(items, start=1)
        ],
    )


def ev(
    eid: str,
    kind: EventType,
    item: str,
    seconds: float,
    user: str = "u1",
    rating: float | None = None,
    rec_request_id: str | None = None,
) -> UserEvent:
    return UserEvent(
        event_id=eid,
        user_id=user,
        event_type=kind,
        item_id=item,
        rating=rating,
        rec_request_id=rec_request_id,
        occurred_at=at(seconds),
    )


SESSION = [
    ev("e0", EventType.CLICK, "A", -10),  # before the impression
    ev("e1", EventType.VIEW, "A", 5),
    ev("e2", EventType.CART, "B", 20, rec_request_id="req-1"),
    ev("e3", EventType.PURCHASE, "C", 30, rec_request_id="req-other"),
    ev("e4", EventType.RATING, "B", 40, rating=4.5),
    ev("e5", EventType.RATING, "B", 50, rating=3.0),
    ev("e6", EventType.DISMISS, "C", WINDOW + 1),  # late
    ev("e7", EventType.CLICK, "D", 10),  # not shown
    ev("e8", EventType.CLICK, "A", 7, user="u2"),  # another user
]
CLOSERS = [  # move u1's partition past the window on both inputs
    response("req-2", "u1", ["E"], WINDOW + 100),
    ev("e9", EventType.VIEW, "Z", WINDOW + 100),
]


def _publish(settings: Settings, records: list[RecResponse | UserEvent], poison: bool) -> None:
    with RecordProducer(settings) as producer:
        topics = producer.topics
        for record in records:
            if isinstance(record, RecResponse):
                producer.send(topics.rec_responses, record.user_id, record)
            else:
                producer.publish_user_event(record)
        if poison:
            for spec in (topics.rec_responses, topics.user_events):
                for payload in poison_messages(spec, AvroSerde()).values():
                    producer.send_raw(spec, "u1", payload)


def _db_state(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(emitted_at), (SELECT count(*) FROM feedback_events) "
            "FROM feedback_impressions"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def _run_until(
    settings: Settings, group: str, done: Callable[[FeedbackWorker], bool], what: str
) -> FeedbackWorker:
    """Run the worker until ``done``, then 5 more sweeps (anything due would close)."""
    ctx = bootstrap(settings, Overrides(group_id=group))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("feedback", ctx, stop))
    try:
        await await_until(
            lambda: (h := ctx.handles.get(FeedbackWorker)) is not None and done(h), 60, what=what
        )
        worker = ctx.handles.require(FeedbackWorker)
        swept = worker.joiner.sweeps
        await await_until(lambda: worker.joiner.sweeps >= swept + 5, 30, what="5 more sweeps")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    return worker


async def test_feedback_join_is_exact_and_emitted_once(settings: Settings) -> None:
    settings = settings.with_overrides(
        attribution_window_s=WINDOW, feedback_allowed_lateness_s=0, feedback_sweep_s=0.2
    )
    admin.ensure_topics(settings)
    assert settings.database_url is not None
    dsn = settings.database_url.get_secret_value()
    topics = RecordProducer(settings).topics

    # phase 1: the impression and its session, plus 4 poison messages per input
    _publish(settings, [response("req-1", "u1", ["A", "B", "C"], 0), *SESSION], poison=True)
    n1 = 1 + len(SESSION) + 8
    worker = await _run_until(
        settings,
        "g1",
        lambda x: x.loop.stats.consumed == n1 and x.loop.stats.commits > 0,
        "phase 1 consumed",
    )
    assert worker.loop.stats.dead_lettered == 8
    # stored: one impression, every outcome event (e0..e8, e6 too: lateness is decided
    # at close time), nothing emitted — the window is still open in event time
    assert _db_state(dsn) == (1, 0, len(SESSION))
    assert read_topic(settings, topics.feedback_examples.name, 0, timeout_s=1) == []
    for spec in (topics.rec_responses, topics.user_events):
        assert spec.dlq is not None
        dead = read_topic(settings, spec.dlq.name, 4)
        letters = [parse_dlq_headers(m.headers()) for m in dead]
        assert len(dead) == 4 and {d.worker for d in letters} == {"feedback"}
        assert {d.reason for d in letters} == {
            "bad_magic_byte",
            "unknown_schema_id",
            "invalid_value",
            "avro_decode_failed",
        }

    # phase 2: the same impression and an event again (duplicates), then time moves on;
    # a fresh consumer group re-reads everything from offset 0 (a full re-delivery)
    _publish(settings, [response("req-1", "u1", ["A", "B", "C"], 0), SESSION[1], *CLOSERS], False)
    n2 = n1 + 2 + len(CLOSERS)
    await _run_until(
        settings,
        "g2",
        lambda x: x.loop.stats.consumed == n2 and x.joiner.emitted == 3,
        "the window of req-1 to close",
    )
    # nothing else closed in the sweeps after it (req-2's window is still open)
    assert _db_state(dsn) == (2, 1, len(SESSION) + 1)

    messages = read_topic(settings, topics.feedback_examples.name, 3)
    assert len(messages) == 3, "each shown item exactly once"
    serde = AvroSerde()
    examples = {e.item_id: e for e in (serde.decode(m.value(), FeedbackExample) for m in messages)}
    assert all(m.key() == b"u1" for m in messages)
    a, b, c = examples["A"], examples["B"], examples["C"]
    assert (a.example_id, a.clicked, a.carted, a.attributed_by, a.outcome_at) == (
        "req-1:A",
        True,
        False,
        "item",
        at(5),
    )
    assert (b.clicked, b.carted, b.rating, b.attributed_by, b.outcome_at) == (
        False,
        True,
        3.0,
        "request_id",
        at(20),
    )
    assert (c.clicked, c.purchased, c.dismissed, c.attributed_by, c.outcome_at) == (
        False,
        False,
        False,
        "none",
        None,
    )
    for e in examples.values():
        assert (e.rank, e.route, e.llm_used, e.propensity, e.prompt_version) == (
            {"A": 1, "B": 2, "C": 3}[e.item_id],
            "CONTENT",
            True,
            0.5,
            "p3",
        )

    # phase 3: yet another full re-delivery emits nothing new
    await _run_until(
        settings,
        "g3",
        lambda x: x.loop.stats.consumed == n2 and x.loop.stats.commits > 0,
        "phase 3 consumed",
    )
    assert len(read_topic(settings, topics.feedback_examples.name, 3, timeout_s=2)) == 3
