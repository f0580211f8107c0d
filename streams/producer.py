"""Producing records: the SDK for upstream services and the emitter workers use.

:class:`RecordProducer` wraps one lazily created confluent-kafka producer
(idempotent, murmur2-partitioned), encodes values with the shared Avro serde, adds
the ``traceparent`` header, and surfaces delivery failures as :class:`DeliveryError`
on :meth:`flush` — a message the broker did not acknowledge is never silently lost.

Upstream services use the typed helpers::

    with RecordProducer.from_settings(settings) as producer:
        producer.publish_catalog_change(CatalogChange(item_id="42", version=3, title=...))
        producer.publish_user_event(UserEvent(user_id="u1", event_type="CLICK", item_id="42"))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, cast

from confluent_kafka import KafkaError, Message, Producer
from opentelemetry.trace import SpanKind

from recsys.records import CatalogChange, Record, RecRequest, UserEvent
from streams.delivery import DeliveryGroup, current_group
from streams.exceptions import DeliveryError
from streams.kafka import producer_config
from streams.registry import ConfluentRegistry, LocalRegistry, SchemaRegistry
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics, TopicSpec
from streams.tracing import KafkaHeaders, headers_with_trace, tracer

__all__ = ["RecordProducer", "registry_from_settings"]

log = logging.getLogger(__name__)


def registry_from_settings(settings: Settings) -> SchemaRegistry:
    """Confluent Schema Registry when its URL is set, else the local one from schemas/."""
    if settings.schema_registry_url:
        auth = settings.schema_registry_basic_auth
        return ConfluentRegistry(
            settings.schema_registry_url,
            auth.get_secret_value() if auth else None,
            timeout_s=settings.admin_timeout_s,
        )
    return LocalRegistry()


class RecordProducer:
    """Avro-encoding, trace-propagating producer with delivery errors surfaced."""

    def __init__(
        self,
        settings: Settings,
        serde: AvroSerde | None = None,
        topics: Topics | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.serde = serde or AvroSerde(registry_from_settings(settings))
        self.topics = topics or Topics(settings)
        self._overrides = dict(config or {})
        self._producer: Producer | None = None
        self._errors: list[str] = []
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, config: dict[str, Any] | None = None) -> Self:
        """A producer for ``settings`` (the Kafka connection is made on first send).

        ``config`` holds librdkafka overrides, e.g. ``{"linger.ms": 0}``.
        """
        return cls(settings, config=config)

    @property
    def producer(self) -> Producer:
        """The underlying confluent-kafka producer, created on first use."""
        if self._producer is None:
            self._producer = Producer(
                producer_config(
                    self.settings, logger=logging.getLogger("librdkafka"), **self._overrides
                )
            )
        return self._producer

    # ---- generic ----------------------------------------------------------------------
    def send(
        self,
        topic: TopicSpec,
        key: str | None,
        record: Record,
        headers: KafkaHeaders | None = None,
    ) -> None:
        """Encode ``record`` and queue it for ``topic`` (asynchronous; see :meth:`flush`)."""
        if topic.value is not None and not isinstance(record, topic.value):
            raise TypeError(f"{topic.name} carries {topic.value.__name__}, got {type(record)}")
        value = self.serde.encode(record, topic.subject)
        with tracer().start_as_current_span(
            f"{topic.base} send",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.destination": topic.name},
        ):
            self.send_raw(topic, key, value, headers_with_trace(headers))

    def send_raw(
        self,
        topic: TopicSpec,
        key: str | bytes | None,
        value: bytes | None,
        headers: KafkaHeaders | None = None,
        *,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue already-encoded bytes (dead letters, replays of archived records).

        ``timestamp_ms`` sets the message timestamp (replays keep the original one).
        """
        extra: dict[str, Any] = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
        group = current_group.get()
        report = self._on_delivery if group is None else self._reporter(group)
        while True:
            try:
                if group is not None:
                    group.sent()
                self.producer.produce(
                    topic.name,
                    value=value,
                    key=key,
                    headers=cast(Any, headers),
                    on_delivery=report,
                    **extra,
                )
                break
            except BufferError:
                if group is not None:
                    group.delivered()  # not queued after all: uncount it
                # local queue full: serve delivery callbacks until there is room
                self.producer.poll(0.05)
        self.producer.poll(0)

    def _reporter(self, group: DeliveryGroup) -> Callable[[KafkaError | None, Message], None]:
        """A delivery callback that also reports to ``group`` (see :mod:`streams.delivery`)."""

        def report(err: KafkaError | None, msg: Message) -> None:
            self._on_delivery(err, msg)
            group.delivered(None if err is None else f"{msg.topic()}: {err.str()}")

        return report

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(f"{msg.topic()}: {err.str()}")

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued message is acknowledged.

        Raises:
            DeliveryError: a message was rejected, or some are still unacknowledged
                after ``timeout_s``.
        """
        if self._producer is None:
            return
        remaining = self._producer.flush(timeout_s)
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise DeliveryError(f"{len(errors)} message(s) not delivered: {errors[:3]}")
        if remaining:
            raise DeliveryError(
                f"{remaining} message(s) still unacknowledged after {timeout_s:.0f}s "
                f"(broker {self.settings.kafka_bootstrap})"
            )

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush and drop the connection."""
        try:
            self.flush(timeout_s)
        finally:
            self._producer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the original error with a delivery error
            try:
                self.close(timeout_s=5)
            except DeliveryError:
                log.exception("undelivered messages while handling another error")

    # ---- typed helpers for upstream services ------------------------------------------
    def publish_catalog_change(self, change: CatalogChange) -> None:
        """Queue a catalog change, keyed by item_id."""
        self.send(self.topics.catalog_changes, change.item_id, change)

    def publish_user_event(self, event: UserEvent) -> None:
        """Queue a user event, keyed by user_id (co-partitioned with requests)."""
        self.send(self.topics.user_events, event.user_id, event)

    def publish_request(self, request: RecRequest) -> None:
        """Queue a recommendation request, keyed by user_id (fire and forget)."""
        self.send(self.topics.rec_requests, request.user_id, request)
