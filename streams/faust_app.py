"""Faust apps for stream workers that keep tables (changelog-backed state).

``create_faust_app`` is the only way workers get an app — nothing is registered at
import time. It applies what the embedded broker needs:

* Faust hard-codes aiokafka ``fetch_max_wait_ms=1500``; Tansu answers a fetch only when
  the wait expires, so every event would wait 1.5 s. The tuned transport sets the
  fetch wait from the settings.
* a short session timeout (group joins take about half of it on Tansu);
* no exactly-once (aiokafka's idempotent producer fails on Tansu): at-least-once with
  idempotent state updates.

Agents subscribe to raw bytes and call :meth:`FaustDecoder.decode`, which runs the same
Avro serde as every other worker and dead-letters what does not decode, instead of
Faust's default of logging and dropping it. :class:`AvroCodec` lets tables and topics
store our records with that serde too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeVar

import faust
from faust.serializers import codecs
from faust.transport.drivers import aiokafka as faust_aiokafka

from recsys.records import Record
from streams.dlq import DeadLetters
from streams.exceptions import SerializationError
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import TopicSpec

__all__ = ["AvroCodec", "FaustDecoder", "create_faust_app", "register_codec"]

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)


class _TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """aiokafka consumer thread whose fetch wait comes from the app's settings."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _TunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _TunedTransport(faust_aiokafka.Transport):
    Consumer = _TunedConsumer


class StreamrecFaustApp(faust.App):
    """A Faust app whose consumer honours ``fetch_wait_ms``."""

    fetch_wait_ms: int | None = None

    def _new_transport(self) -> Any:
        return _TunedTransport(self.conf.broker_consumer, self)


def create_faust_app(
    settings: Settings,
    worker: str,
    *,
    fetch_wait_ms: int | None = None,
    partitions: int | None = None,
    **conf: Any,
) -> StreamrecFaustApp:
    """A configured, unstarted Faust app for ``worker`` (group id and table names included).

    Args:
        settings: the process settings.
        worker: worker name; the app id (consumer group, changelog prefix) derives from it.
        fetch_wait_ms: consumer fetch wait; defaults to ``batch_fetch_wait_ms``.
        partitions: partitions of internal topics (changelogs); defaults to user_partitions.
        conf: further Faust settings (they win).
    """
    session_s = settings.session_timeout_ms / 1000
    data_dir = Path(settings.home) / "faust" / f"{settings.topic_prefix}{worker}"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "store": "memory://",
        "autodiscover": False,
        "web_enabled": False,
        "datadir": str(data_dir),
        "topic_partitions": partitions or settings.user_partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        "processing_guarantee": "at_least_once",
        "broker_session_timeout": session_s,
        "broker_heartbeat_interval": max(0.3, session_s / 6),
        "broker_request_timeout": max(session_s + 10, 40.0),
        "broker_rebalance_timeout": max(session_s * 2, 10.0),
        "broker_commit_every": 1000,
        "broker_commit_interval": 1.0,
        "stream_wait_empty": True,
        "table_standby_replicas": 0,
        "logging_config": None,
        "loghandlers": [],
    }
    options.update(conf)
    app = StreamrecFaustApp(f"{settings.topic_prefix}streamrec-{worker}", **options)
    app.fetch_wait_ms = fetch_wait_ms or settings.batch_fetch_wait_ms
    return app


class AvroCodec(codecs.Codec):
    """Faust codec storing one record type with the shared Confluent-wire Avro serde."""

    def __init__(self, model: type[Record], serde: AvroSerde, subject: str) -> None:
        super().__init__(model=model.__name__, subject=subject)
        self.model = model
        self.serde = serde
        self.subject = subject

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, self.model):
            return self.serde.encode(obj, self.subject)
        return self.serde.encode(self.model.model_validate(obj), self.subject)

    def _loads(self, s: bytes) -> Any:
        return self.serde.decode(s, self.model)


def register_codec(model: type[Record], serde: AvroSerde, subject: str) -> str:
    """Register an :class:`AvroCodec` for ``model``; return its codec name."""
    name = f"avro-{model.__name__}"
    codecs.register(name, AvroCodec(model, serde, subject))
    return name


class FaustDecoder:
    """Decode raw Faust events with the serde, dead-lettering failures.

    The dead letter is flushed before ``decode`` returns, so when the agent then acks
    the event (and Faust commits past it) the bytes are already safe on the DLQ.
    """

    def __init__(self, producer: RecordProducer, worker: str) -> None:
        self.serde = producer.serde
        self.dead_letters = DeadLetters(producer, worker)
        self.producer = producer

    def decode(self, spec: TopicSpec, event: faust.types.EventT[Any]) -> Record | None:
        """The record carried by ``event``, or None after dead-lettering it."""
        message = event.message
        assert spec.value is not None
        try:
            value = message.value
            if isinstance(value, str):
                value = value.encode()
            return self.serde.decode(value, spec.value)
        except SerializationError as exc:
            self.dead_letter(spec, event, exc.reason, str(exc))
        return None

    def dead_letter(self, spec: TopicSpec, event: Any, reason: str, error: str) -> None:
        """Send ``event``'s original bytes to the DLQ of ``spec`` with the reason; flushed."""
        message = event.message
        headers = message.headers
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        key = message.key
        self.dead_letters.send(
            spec,
            key=key,
            value=message.value,
            partition=message.partition,
            offset=message.offset,
            reason=reason,
            error=error,
            headers=pairs,
        )
        self.producer.flush()
