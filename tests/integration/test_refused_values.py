"""Values Postgres refuses never stop a worker (issue 14, defect 3).

Each worker that writes or reads Postgres gets, in one batch with good records around
them, (a) text holding a NUL character — valid Avro that no Postgres text can store —
and (b) a record that passes our validation but that Postgres itself refuses. On the
real broker and Postgres: (a) is dead-lettered at decode (``invalid_value``), (b) is
isolated and dead-lettered with the database's reason (``store_rejected``) and its
``topic[partition]@offset``, the good records are handled exactly once, and the worker
keeps running. Before the fix the first NUL stopped every one of them.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg
from confluent_kafka import Message

from recsys.records import (
    CatalogChange,
    EventType,
    RecommendedItem,
    RecRequest,
    RecResponse,
    UserEvent,
)
from streams import admin
from streams.consumer_loop import headers_of
from streams.dlq import DeadLetter, parse_dlq_headers, value_digest
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics
from tests.helpers import await_until, read_topic
from tests.integration.enrich_harness import caught_up, enrich_worker, enriched_events, rows
from tests.integration.test_feedback_worker import CLOSERS, WINDOW, ev, response
from tests.integration.users_harness import (
    T0,
    USERS_OVERRIDES,
    assert_exact,
    make_log,
    publish,
)
from tests.integration.users_harness import (
    caught_up as users_caught_up,
)
from workers.bootstrap import Overrides, bootstrap
from workers.enrich_worker import EnrichWorker
from workers.feedback_worker import FeedbackWorker
from workers.runtime import serve_forever
from workers.serve_worker import ServeWorker
from workers.users_worker import UsersWorker


def astral(n: int, seed: int) -> str:
    """``n`` random 4-byte UTF-8 characters: within the 512-character id limit, but two
    such ids in one index row exceed btree's 2,704-byte maximum (and do not compress)."""
    rng = random.Random(seed)
    return "".join(chr(rng.randint(0x10000, 0x10FFFF)) for _ in range(n))


def dead_letters(settings: Settings, topic: str, expected: int) -> list[DeadLetter]:
    return [parse_dlq_headers(headers_of(m)) for m in read_topic(settings, topic, expected)]


def dsn_of(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url.get_secret_value()


def source_of(settings: Settings, letter: DeadLetter) -> Message:
    """The message a dead letter names, read from its source topic."""
    for msg in read_topic(settings, letter.topic, letter.offset + 1):
        if (msg.partition(), msg.offset()) == (letter.partition, letter.offset):
            return msg
    raise AssertionError(f"no message at {letter.source}")


def alive(task: asyncio.Task[None]) -> None:
    if task.done():
        task.result()  # raises the worker's error
        raise AssertionError("the worker stopped")


async def test_users_parks_nul_text_and_refused_rows_and_applies_the_rest_once(
    settings: Settings,
) -> None:
    s = settings.with_overrides(**USERS_OVERRIDES)
    admin.ensure_topics(s)
    spec = Topics(s).user_events
    assert spec.dlq is not None
    log = make_log(n_users=8, n_events=120, seed=3)
    nul = UserEvent(
        event_id="nul-1", user_id="u1", event_type=EventType.SEARCH, query="heist\x00films"
    )
    # two visits of one user to items with long ids: their co-visit row is over btree's
    # size limit, so Postgres refuses the second event's transaction
    first = UserEvent(
        event_id="long-1",
        user_id="u-long",
        event_type=EventType.VIEW,
        item_id=astral(512, 1),
        occurred_at=T0,
    )
    second = first.model_copy(
        update={
            "event_id": "long-2",
            "item_id": astral(512, 2),
            "occurred_at": T0 + timedelta(seconds=10),
        }
    )
    publish(s, log[:60])
    publish(s, [nul, first, second])
    publish(s, log[60:])

    ctx = bootstrap(s)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("users", ctx, stop))
    dsn = dsn_of(s)
    kept = [*log, first]  # what the state must be made of
    try:
        await await_until(
            lambda: task.done() or users_caught_up(dsn, kept, s), 120, 0.3, what="users caught up"
        )
        alive(task)
        letters = dead_letters(s, spec.dlq.name, 2)
        worker = ctx.handles.require(UsersWorker)
        assert worker.loop.stats.splits >= 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert_exact(dsn, kept, s)  # every good event applied exactly once
    assert sorted((d.reason, d.worker) for d in letters) == [
        ("invalid_value", "users"),
        ("store_rejected", "users"),
    ]
    by_reason = {d.reason: d for d in letters}
    assert "NUL" in by_reason["invalid_value"].error
    assert "index row size" in by_reason["store_rejected"].error
    serde = AvroSerde()
    for reason, event in (("invalid_value", nul), ("store_rejected", second)):
        source = source_of(s, by_reason[reason]).value()
        assert source == serde.encode(event, spec.subject)
        assert by_reason[reason].sha256 == value_digest(source)
    assert by_reason["store_rejected"].group == f"{s.topic_prefix}streamrec-users"


async def test_feedback_parks_nul_text_and_refused_rows_and_joins_the_rest_once(
    settings: Settings,
) -> None:
    s = settings.with_overrides(
        attribution_window_s=WINDOW, feedback_allowed_lateness_s=0, feedback_sweep_s=0.2
    )
    admin.ensure_topics(s)
    topics = Topics(s)
    shown = response("req-1", "u1", ["A", "B", "C"], 0)
    bad_item = RecommendedItem(item_id="A", rank=1, score=1.0, source="t", explanation="a\x00b")
    nul = response("req-nul", "u1", ["A"], 1).model_copy(update={"items": [bad_item]})
    # an outcome whose (user_id, event_id) key is over btree's size limit
    huge = ev(astral(512, 3), EventType.CLICK, "A", 6, user=astral(512, 4))
    with RecordProducer(s) as producer:
        producer.send(topics.rec_responses, "u1", shown)
        producer.send(topics.rec_responses, "u1", nul)
        for event in (ev("e1", EventType.VIEW, "A", 5), huge, ev("e2", EventType.CART, "B", 20)):
            producer.publish_user_event(event)
        for record in CLOSERS:
            if isinstance(record, RecResponse):
                producer.send(topics.rec_responses, record.user_id, record)
            else:
                assert isinstance(record, UserEvent)
                producer.publish_user_event(record)

    ctx = bootstrap(s, Overrides(group_id="fb"))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("feedback", ctx, stop))
    try:
        await await_until(
            lambda: (
                task.done()
                or ((h := ctx.handles.get(FeedbackWorker)) is not None and h.joiner.emitted >= 3)
            ),
            90,
            what="req-1's window to close",
        )
        alive(task)
        worker = ctx.handles.require(FeedbackWorker)
        swept = worker.joiner.sweeps
        await await_until(lambda: worker.joiner.sweeps >= swept + 5, 30, what="5 more sweeps")
        alive(task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert topics.rec_responses.dlq is not None and topics.user_events.dlq is not None
    [on_responses] = dead_letters(s, topics.rec_responses.dlq.name, 1)
    [on_events] = dead_letters(s, topics.user_events.dlq.name, 1)
    assert (on_responses.reason, on_responses.offset) == ("invalid_value", 1)
    assert "items.0.explanation" in on_responses.error
    assert (on_events.reason, on_events.worker) == ("store_rejected", "feedback")
    assert "index row size" in on_events.error
    source = AvroSerde().decode(source_of(s, on_events).value(), UserEvent)
    assert source.event_id == huge.event_id
    examples = read_topic(s, topics.feedback_examples.name, 3)
    assert [m.key() for m in examples] == [b"u1"] * 3  # each shown item once
    with psycopg.connect(dsn_of(s)) as conn:
        stored = conn.execute("SELECT event_id FROM feedback_events ORDER BY 1").fetchall()
        impressions = conn.execute("SELECT request_id FROM feedback_impressions").fetchall()
    assert [r[0] for r in stored] == ["e1", "e2", "e9"]
    assert sorted(r[0] for r in impressions) == ["req-1", "req-2"]


async def test_enrich_parks_nul_text_and_refused_rows_and_enriches_the_rest_once(
    settings: Settings, embedder: Any
) -> None:
    spec = Topics(settings).catalog_changes
    assert spec.dlq is not None
    with psycopg.connect(dsn_of(settings), autocommit=True) as conn:
        # a real refusal of values that pass our validation (as an operator's constraint,
        # a domain or a trigger would give)
        conn.execute("ALTER TABLE items ADD CONSTRAINT no_refused CHECK (title <> 'Refused')")
    good = [CatalogChange(item_id=f"g{i}", version=1, title=f"Good item {i}") for i in range(4)]
    nul = CatalogChange(item_id="nul", version=1, title="Tab\x00le")
    refused = CatalogChange(item_id="refused", version=1, title="Refused")
    admin.ensure_topics(settings)
    with RecordProducer(settings) as producer:
        for change in (good[0], nul, good[1], refused, good[2], good[3]):
            producer.send(spec, "k", change)  # one key: one partition, one batch
    async with enrich_worker(settings, embedder) as ctx:
        await caught_up(settings)
        assert ctx.handles.require(EnrichWorker).loop.stats.splits >= 1
    assert set(rows(settings)) == {c.item_id for c in good}
    events = Counter(e.item_id for e in enriched_events(settings, 4))
    assert events == Counter({c.item_id: 1 for c in good})  # each announced once
    letters = dead_letters(settings, spec.dlq.name, 2)
    assert sorted((d.reason, d.offset) for d in letters) == [
        ("invalid_value", 1),
        ("store_rejected", 3),
    ]
    assert "no_refused" in next(d.error for d in letters if d.reason == "store_rejected")


async def test_serve_parks_nul_text_and_refused_reads_and_answers_the_rest_once(
    settings: Settings, embedder: Any
) -> None:
    admin.ensure_topics(settings)
    topics = Topics(settings)
    spec = topics.rec_requests
    assert spec.dlq is not None
    with psycopg.connect(dsn_of(settings), autocommit=True) as conn:
        # a read Postgres refuses for one user only: the state of 'refuse-me' is computed
        # by a cast that fails (22P02), as a broken view or a bad row would
        conn.execute("ALTER TABLE user_state RENAME TO user_state_rows")
        conn.execute(
            "CREATE VIEW user_state AS SELECT user_id, version, warmth, positives, engagement, "
            "engagement_at, session_id, last_event_at, "
            "CASE WHEN user_id = 'refuse-me' THEN user_id::int::text::jsonb ELSE state END "
            "AS state, updated_at FROM user_state_rows"
        )
        conn.execute(
            "INSERT INTO user_state_rows (user_id, version, warmth, positives, engagement, "
            "state) VALUES ('refuse-me', 1, 'COLD', 0, 0, '{}')"
        )
    # produced before the worker starts: a deadline as long as the test's wait, so that
    # none is shed as EXPIRED (which reads nothing) while the worker loads its model
    late_ok = 120_000
    good = [
        RecRequest(request_id=f"r{i}", user_id=f"user-{i}", k=5, deadline_ms=late_ok)
        for i in range(5)
    ]
    requests = [good[0], good[1]]
    requests += [RecRequest(request_id="r-nul", user_id="u\x00x", k=5, deadline_ms=late_ok)]
    refused = RecRequest(request_id="r-refused", user_id="refuse-me", k=5, deadline_ms=late_ok)
    requests += [good[2], refused]
    requests += good[3:]
    with RecordProducer(settings) as producer:
        for request in requests:
            producer.send(spec, "k", request)  # one partition: they arrive as one batch
    ctx = bootstrap(settings, Overrides(embedder=embedder))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("serve", ctx, stop))
    serde = AvroSerde()
    try:
        await await_until(
            lambda: (
                task.done()
                or ((h := ctx.handles.get(ServeWorker)) is not None and h.loop.stats.commits > 0)
            ),
            120,
            what="the batch served and committed",
        )
        alive(task)
        answers = [
            serde.decode(m.value(), RecResponse).request_id
            for m in read_topic(settings, topics.rec_responses.name, len(good))
        ]
        alive(task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert Counter(answers) == Counter({r.request_id: 1 for r in good})
    letters = dead_letters(settings, spec.dlq.name, 2)
    assert sorted((d.reason, d.offset) for d in letters) == [
        ("invalid_value", 2),
        ("store_rejected", 4),
    ]
    assert "22P02" in next(d.error for d in letters if d.reason == "store_rejected")
