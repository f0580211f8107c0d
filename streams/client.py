"""Request/response client: publish a RecRequest, await the matching RecResponse.

The client reads ``rec.responses`` without a consumer group: at start it pins every
partition at its current high watermark (so no response produced after start can be
missed, and no group join delays the first request), then one background thread
hands each response to the caller waiting for its ``request_id``.

A request the serve worker shed (its deadline had passed before serving began) is
answered with ``status=EXPIRED`` and no items: :meth:`RecClient.wait`, :meth:`request`
and :meth:`arequest` raise :class:`~streams.exceptions.RequestExpired` for it (a
:class:`~streams.exceptions.RequestTimeout`), never return it as an empty list that would
read as "nothing to recommend"; a future from :meth:`submit` resolves with the response,
whose ``expired`` property says so.

With ``llm_log=True`` it also reads ``rec.llm-log`` the same way and keeps the records of
the requests it sent (:meth:`RecClient.llm_logs`), so a client can show what an LLM did.
:class:`Conversation` numbers the turns of one conversation over a client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any, Self

from confluent_kafka import Consumer, KafkaException, TopicPartition
from opentelemetry.trace import SpanKind

from recsys.records import ConversationTurn, LlmInvolvement, RecRequest, RecResponse, new_id
from streams.exceptions import (
    BrokerUnavailable,
    RequestExpired,
    RequestTimeout,
    SerializationError,
)
from streams.kafka import consumer_config, poll_batch
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.tracing import tracer

__all__ = ["Conversation", "RecClient"]

log = logging.getLogger(__name__)


class RecClient:
    """Ask for recommendations and wait for them; thread-safe, one instance per process."""

    def __init__(
        self, settings: Settings, producer: RecordProducer | None = None, *, llm_log: bool = False
    ) -> None:
        self.settings = settings
        self.llm_log = llm_log
        self._logs: dict[str, list[LlmInvolvement]] = {}
        self.producer = producer or RecordProducer(settings, config={"linger.ms": 0})
        self.topics = self.producer.topics
        self._pending: dict[str, Future[RecResponse]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings)

    def start(self) -> Self:
        """Pin the response partitions at their end and start the reader thread."""
        if self._thread is not None:
            return self
        conf = consumer_config(
            self.settings,
            group_id=f"streamrec-client-{new_id()[:12]}",
            latency_sensitive=True,
            logger=logging.getLogger("librdkafka"),
        )
        consumer = Consumer(conf)
        topics = [self.topics.rec_responses.name]
        if self.llm_log:
            topics.append(self.topics.llm_log.name)
        assignment = []
        for topic in topics:
            try:
                md = consumer.list_topics(topic, timeout=self.settings.admin_timeout_s)
                partitions = sorted(md.topics[topic].partitions)
                if not partitions:
                    raise BrokerUnavailable(f"topic {topic} has no partitions (not created yet?)")
                for p in partitions:
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=self.settings.admin_timeout_s
                    )
                    assignment.append(TopicPartition(topic, p, high))
            except KafkaException as exc:
                consumer.close()
                raise BrokerUnavailable(
                    f"cannot read {topic} at {self.settings.kafka_bootstrap}: {exc}"
                ) from exc
        consumer.assign(assignment)
        self._consumer = consumer
        self._thread = threading.Thread(target=self._run, name="rec-client", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._consumer is not None
        serde = self.producer.serde
        while not self._stop.is_set():
            try:
                messages = poll_batch(self._consumer, 256, 0.05)
            except KafkaException:
                log.exception("response consumer failed")
                time.sleep(0.5)
                continue
            for msg in messages:
                if msg.error():
                    continue
                if msg.topic() == self.topics.llm_log.name:
                    self._keep_log(msg.value())
                    continue
                try:
                    response = serde.decode(msg.value(), RecResponse)
                except SerializationError as exc:
                    log.warning("undecodable response at %s: %s", msg.offset(), exc)
                    continue
                with self._lock:
                    future = self._pending.pop(response.request_id, None)
                if future is not None and not future.done():
                    future.set_result(response)
        self._consumer.close()

    def _keep_log(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            record = self.producer.serde.decode(value, LlmInvolvement)
        except SerializationError:
            return
        with self._lock:
            if record.request_id in self._logs:
                self._logs[record.request_id].append(record)

    def llm_logs(self, request_id: str, wait_s: float = 0.5) -> list[LlmInvolvement]:
        """The ``rec.llm-log`` records of a request this client sent (``llm_log=True``),
        waiting up to ``wait_s`` for them to arrive after the response."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                found = list(self._logs.get(request_id, ()))
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.02)

    def submit(self, request: RecRequest) -> Future[RecResponse]:
        """Publish ``request``; the future resolves with its response."""
        if self._thread is None:
            self.start()
        future: Future[RecResponse] = Future()
        with self._lock:
            self._pending[request.request_id] = future
            if self.llm_log:
                self._logs[request.request_id] = []
                while len(self._logs) > 1000:  # keep the newest requests' records
                    self._logs.pop(next(iter(self._logs)))
        with tracer().start_as_current_span("rec.request", kind=SpanKind.CLIENT):
            self.producer.publish_request(request)
            self.producer.producer.flush(0)  # hand it to librdkafka's sender now
        return future

    def request(self, user_id: str, *, timeout_s: float = 5.0, **fields: Any) -> RecResponse:
        """Ask for recommendations for ``user_id`` and wait for the answer.

        Raises:
            RequestExpired: the serve worker shed the request (deadline passed first).
            RequestTimeout: no response within ``timeout_s``.
        """
        request = RecRequest(user_id=user_id, **fields)
        return self.wait(request, self.submit(request), timeout_s)

    def wait(
        self, request: RecRequest, future: Future[RecResponse], timeout_s: float
    ) -> RecResponse:
        """Wait for the response to a submitted request.

        Raises:
            RequestExpired: the answer is ``EXPIRED`` (see the module docstring).
            RequestTimeout: no response within ``timeout_s``.
        """
        try:
            return _usable(future.result(timeout=timeout_s))
        except FutureTimeout:
            with self._lock:
                self._pending.pop(request.request_id, None)
            raise RequestTimeout(
                f"no response to request {request.request_id} within {timeout_s:.1f}s "
                f"(is the serve worker running on {self.topics.rec_requests.name}?)"
            ) from None

    async def arequest(self, user_id: str, *, timeout_s: float = 5.0, **fields: Any) -> RecResponse:
        """Async variant of :meth:`request` (same exceptions)."""
        request = RecRequest(user_id=user_id, **fields)
        future = self.submit(request)
        try:
            return _usable(await asyncio.wait_for(asyncio.wrap_future(future), timeout_s))
        except TimeoutError:
            with self._lock:
                self._pending.pop(request.request_id, None)
            raise RequestTimeout(
                f"no response to request {request.request_id} within {timeout_s:.1f}s"
            ) from None

    def close(self) -> None:
        """Stop the reader thread and flush the producer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.producer.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _usable(response: RecResponse) -> RecResponse:
    """``response``, unless it is an ``EXPIRED`` answer (then :class:`RequestExpired`)."""
    if response.expired:
        raise RequestExpired(
            f"request {response.request_id} was not served "
            f"({response.short_reason or 'expired: its deadline had passed'}); send it again "
            "with a longer deadline_ms, or when the serve worker has caught up",
            response,
        )
    return response


class Conversation:
    """One conversation of a user over a :class:`RecClient`: turns numbered 1, 2, …"""

    def __init__(self, client: RecClient, user_id: str, *, k: int = 5) -> None:
        self.client, self.user_id, self.k = client, user_id, k
        self.conversation_id = new_id()[:16]
        self.turn = 0

    def request(self, text: str, *, show_now: bool = False) -> RecRequest:
        """The next turn's request (the turn number moves on)."""
        self.turn += 1
        return RecRequest(
            user_id=self.user_id,
            k=self.k,
            deadline_ms=5000,
            context={"source": "chat"},
            conversation=ConversationTurn(
                conversation_id=self.conversation_id,
                turn=self.turn,
                text=text[:2000],
                show_now=show_now,
            ),
        )

    def say(self, text: str, *, show_now: bool = False, timeout_s: float = 15.0) -> RecResponse:
        """Send one turn and wait for the reply (a question, or recommendations)."""
        request = self.request(text, show_now=show_now)
        return self.client.wait(request, self.client.submit(request), timeout_s)
