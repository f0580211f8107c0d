"""Small, bounded helpers shared by tests (polling, reading a topic from the start)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, Message, TopicPartition

from streams.kafka import consumer_config
from streams.settings import Settings

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


async def await_until(
    predicate: Callable[[], T],
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Async :func:`wait_until`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


def read_topic(
    settings: Settings, topic: str, expected: int, timeout_s: float = 20.0
) -> list[Message]:
    """Read a topic from the beginning (all partitions, no group) until ``expected`` messages."""
    consumer = Consumer(
        consumer_config(
            settings,
            f"test-reader-{uuid.uuid4().hex[:8]}",
            latency_sensitive=True,
            logger=logging.getLogger("librdkafka"),
        )
    )
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = md.topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                if msg.error() is None:
                    out.append(msg)
        # a short extra poll shows whether there is more than expected
        for msg in consumer.consume(500, 0.3):
            if msg.error() is None:
                out.append(msg)
        return out
    finally:
        consumer.close()


def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Committed offset per partition of ``topic`` for ``group`` (-1001 when none)."""
    consumer = Consumer(
        consumer_config(
            settings, group, latency_sensitive=True, logger=logging.getLogger("librdkafka")
        )
    )
    try:
        md = consumer.list_topics(topic, timeout=10)
        tps = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()
