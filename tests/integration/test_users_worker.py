"""Worker `users` in process on the real broker and Postgres: a log with duplicates and
poison messages ends in exactly the offline state (table, read model, user_events,
co-visitation); bad input and mis-keyed events go to the DLQ; the worker refuses to
start when user.events and rec.requests differ in partition count."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from recsys.records import EventType, UserEvent
from stack.supervisor import settings_env
from streams import admin
from streams.dlq import parse_dlq_headers
from streams.exceptions import PartitionMismatch
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from testkit.poison import poison_messages
from tests.helpers import await_until, committed_offsets, read_topic
from tests.integration.users_harness import (
    USERS_OVERRIDES,
    assert_exact,
    caught_up,
    make_log,
    publish,
)
from workers.bootstrap import bootstrap
from workers.runtime import preflight, serve_forever
from workers.users_worker import UsersWorker

REPO = Path(__file__).resolve().parents[2]


async def test_state_is_exact_with_duplicates_and_bad_input_goes_to_the_dlq(
    settings: Settings,
) -> None:
    s = settings.with_overrides(**USERS_OVERRIDES)
    admin.ensure_topics(s)
    log = make_log(n_users=12, n_events=300)
    publish(s, log[:150])
    spec = Topics(s).user_events
    assert spec.dlq is not None
    with RecordProducer(s) as producer:
        poison = poison_messages(spec, producer.serde)
        for payload in poison.values():
            producer.send_raw(spec, "u1", payload)
        mis_keyed = UserEvent(user_id="u1", event_type=EventType.VIEW, item_id="i1")
        producer.send(spec, "u2", mis_keyed)
    publish(s, log[150:])

    ctx = bootstrap(s)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("users", ctx, stop))
    assert s.database_url is not None
    dsn = s.database_url.get_secret_value()
    try:
        await await_until(
            lambda: task.done() or caught_up(dsn, log, s), 120, 0.5, what="users caught up"
        )
        updater = ctx.handles.require(UsersWorker).updater
        assert_exact(dsn, log, s)  # read model, user_events and co-visitation
        assert updater.stats.duplicates >= len(log) - len({e.event_id for e in log})
        # offsets are committed behind the durable batches
        group, topic = f"{s.topic_prefix}streamrec-users", spec.name
        ends = {p: o + 1 for p, o in updater.stats.durable_offsets.items()}
        await await_until(
            lambda: committed_offsets(s, group, topic) == ends, 30, 0.5, what="offsets committed"
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    dead = read_topic(s, spec.dlq.name, len(poison) + 1)
    reasons = sorted(parse_dlq_headers(m.headers()).reason for m in dead)
    assert reasons == sorted([*poison, "key_mismatch"])


def test_users_refuses_mismatched_partitions(settings: Settings) -> None:
    """`streamrec worker users` stops at start-up, exit 2, naming the topics."""
    topics = Topics(settings)
    client = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    name = topics.rec_requests.name
    client.create_topics([NewTopic(name, settings.user_partitions + 1, 1)])[name].result(10)
    with pytest.raises(PartitionMismatch):  # creates the others, then checks
        admin.ensure_topics(settings, [t for t in topics if t.name != name])
    with pytest.raises(PartitionMismatch, match="equal partition counts"):
        preflight(settings, "users")
    proc = subprocess.run(
        [sys.executable, "-m", "cli.app", "worker", "users"],
        cwd=REPO,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{name}={settings.user_partitions + 1}" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
