"""confluent-kafka client configuration built from the settings, in one place.

Tansu (the embedded broker) answers a fetch only when ``fetch.wait.max.ms`` expires,
so the fetch wait is the latency floor of every consumer: latency-sensitive consumers
use ``fetch_wait_ms`` (small), throughput consumers ``batch_fetch_wait_ms``.
All producers use the murmur2 partitioner, the same as the Java clients, so that topics
keyed by user_id stay co-partitioned whoever produces them.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from streams.settings import Settings

__all__ = ["admin_config", "consumer_config", "poll_batch", "producer_config"]


def _common(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        conf["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        conf["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return conf


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent (when enabled), murmur2-partitioned, low-linger producer."""
    conf = _common(settings) | {
        "enable.idempotence": settings.enable_idempotence,
        "acks": "all",
        "linger.ms": settings.producer_linger_ms,
        "partitioner": "murmur2_random",
        "compression.type": "none",
        "message.timeout.ms": 30_000,
    }
    return conf | overrides


def consumer_config(
    settings: Settings, group_id: str, *, latency_sensitive: bool, **overrides: Any
) -> dict[str, Any]:
    """Manual-commit consumer; the fetch wait depends on what the consumer is for."""
    wait = settings.fetch_wait_ms if latency_sensitive else settings.batch_fetch_wait_ms
    conf = _common(settings) | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": wait,
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(300, settings.session_timeout_ms // 6),
        "partition.assignment.strategy": "range",
        "isolation.level": "read_uncommitted",
    }
    return conf | overrides


def admin_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Admin client configuration."""
    return _common(settings) | overrides


def poll_batch(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Wait up to ``timeout_s`` for one message, then take what is already fetched.

    ``Consumer.consume(n, timeout)`` waits until it has ``n`` messages or the timeout
    passes, which adds the whole timeout to the latency of a lone request; this returns
    as soon as anything is there.
    """
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    return [first, *consumer.consume(max_messages - 1, 0)]


def poll_paused(consumer: Consumer, paused: list[TopicPartition]) -> list[TopicPartition]:
    """Keep the group membership of a consumer that holds back (partitions paused).

    A ``poll`` is what serves rebalances and heartbeats, so a waiting consumer must still
    call it; two things can go wrong then, and this handles both:

    * a partition assigned during the poll is not paused, so the poll may return one of
      its messages — it is sought back, never dropped (its offset is not consumed);
    * librdkafka keeps a partition's application pause across a revoke and a new
      assignment of the same partition, so a pause taken before a rebalance would
      outlive it and the partition would never be fetched again: the caller resumes
      what this returns — every partition it paused, assigned or not — when it stops
      holding back.

    Returns:
        The partitions paused so far (``paused`` plus the current assignment).
    """
    assignment = consumer.assignment()
    consumer.pause(assignment)
    held = {(p.topic, p.partition): p for p in [*paused, *assignment]}
    msg = consumer.poll(0)
    if msg is not None and msg.error() is None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        consumer.seek(TopicPartition(topic, partition, offset))
    return list(held.values())


def resume_all(consumer: Consumer, paused: list[TopicPartition]) -> None:
    """Resume what :func:`poll_paused` paused and everything assigned now (a partition
    that is not assigned any more keeps no pause for its next assignment)."""
    current = consumer.assignment()
    held = {(p.topic, p.partition): p for p in [*paused, *current]}
    if held:
        consumer.resume(list(held.values()))
