"""A consumer that holds back (partitions paused while inputs retry) through a rebalance.

librdkafka keeps a partition's application pause across a revoke and a new assignment
of the same partition. The pipelined loop used to pause, poll (a rebalance revoked the
partitions during that poll), then resume only what was assigned after the poll —
nothing — so the same partitions, assigned back by a later poll, stayed paused for good:
a soak saw the serve group stop answering for 7 minutes with its lag reading 0. The base
loop could also drop a message of a partition assigned while it waited (its keep-alive
poll returned it and nobody handled it). ``poll_paused``/``resume_all`` fix both; this
test drives real rebalances on the embedded broker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka import consumer_config, poll_paused, resume_all
from streams.settings import Settings

Resume = Callable[[Consumer, list[TopicPartition]], None]


class Member:
    """One consumer of the group, counting its rebalances and keeping what it read."""

    def __init__(self, s: Settings, group: str, topic: str) -> None:
        conf = consumer_config(s, group, latency_sensitive=True)
        conf |= {"session.timeout.ms": 3000, "heartbeat.interval.ms": 500}
        self.consumer = Consumer(conf)
        self.revokes = 0
        self.got: list[bytes] = []
        self.consumer.subscribe(
            [topic], on_revoke=lambda c, ps: self._revoked(), on_assign=lambda c, ps: None
        )

    def _revoked(self) -> None:
        self.revokes += 1

    def read(self) -> None:
        msg = self.consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            self.got.append(msg.value() or b"")

    def hold_back_once(self, resume: Resume) -> bool:
        """The pipelined loop's idle step: pause, poll, resume; True if a revoke came."""
        before = self.revokes
        paused = poll_paused(self.consumer, [])
        resume(self.consumer, paused)
        return self.revokes > before


def until(
    cond: Callable[[], bool], step: Callable[[], object], timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        step()


def test_a_pause_taken_before_a_rebalance_does_not_outlive_it(kafka_settings: Settings) -> None:
    s = kafka_settings
    topic, group = f"pause-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap})
    producer.produce(topic, b"first")
    producer.flush(30)

    held = Member(s, group, topic)
    other: Member | None = None
    try:
        until(lambda: held.got == [b"first"], held.read, 60, "the first message")
        # a second member joins: the (eager) rebalance revokes the held partition during
        # one of held's idle steps, and a later ordinary poll assigns it back
        other = Member(s, group, topic)
        revoked_while_paused = False

        def idle_step() -> None:
            nonlocal revoked_while_paused
            revoked_while_paused |= held.hold_back_once(resume_all)
            other.read()  # type: ignore[union-attr]
            time.sleep(0.05)

        until(lambda: revoked_while_paused, idle_step, 60, "a revoke during an idle step")
        other.consumer.close()
        other = None
        until(lambda: bool(held.consumer.assignment()), held.read, 60, "the partition back")
        producer.produce(topic, b"second")
        producer.flush(30)
        # (nothing was committed: the first message may come again, at least once)
        until(lambda: b"second" in held.got, held.read, 60, "the second message")
    finally:
        if other is not None:
            other.consumer.close()
        held.consumer.close()


def test_a_message_of_a_partition_assigned_while_paused_is_not_dropped(
    kafka_settings: Settings,
) -> None:
    s = kafka_settings
    topic, group = f"pause-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap})
    producer.produce(topic, b"waiting")
    producer.flush(30)
    held = Member(s, group, topic)
    try:
        # nothing assigned yet: the keep-alive polls get the assignment and may fetch
        paused: list[TopicPartition] = []
        deadline = time.monotonic() + 60
        while not held.consumer.assignment() or time.monotonic() < deadline - 55:
            assert time.monotonic() < deadline, "never assigned"
            paused = poll_paused(held.consumer, paused)
            time.sleep(0.05)
        resume_all(held.consumer, paused)
        until(lambda: bool(held.got), held.read, 60, "the message after resuming")
        assert held.got == [b"waiting"]
    finally:
        held.consumer.close()
