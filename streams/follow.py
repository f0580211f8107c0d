"""Follow the keys of a topic from its end, in a thread: cache invalidation feeds.

Each serving process keeps its own caches, so each must see *every* ``catalog.enriched``
event — not a consumer group's share. :class:`KeyFollower` assigns all partitions of
the topic itself (no group, nothing committed), starting at the end offsets read
*before* :meth:`start` returns: whatever is written to the store after that produces an
event the follower will see, and anything a cache loads after ``start`` is at least as
new as the events before it. The values are not decoded: the key (the item id) is all
an invalidation needs.

If the follower loses the broker (a consumer error), ``on_gap`` is called so the owner
can drop its cache instead of trusting it blindly; events resume where they left off.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.exceptions import BrokerUnavailable
from streams.kafka import consumer_config, poll_batch
from streams.settings import Settings
from streams.topics import TopicSpec

__all__ = ["KeyFollower"]

log = logging.getLogger(__name__)


class KeyFollower:
    """Calls ``on_keys`` with the (decoded) keys of new messages on ``topic``."""

    def __init__(
        self,
        settings: Settings,
        topic: TopicSpec,
        on_keys: Callable[[list[str]], object],
        on_gap: Callable[[], object] = lambda: None,
        fetch_wait_ms: int | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.on_keys = on_keys
        self.on_gap = on_gap
        self.fetch_wait_ms = fetch_wait_ms or settings.batch_fetch_wait_ms
        self.seen = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None

    def start(self) -> KeyFollower:
        """Assign every partition at its current end, then follow in a thread.

        Raises:
            BrokerUnavailable: the topic's partitions or end offsets cannot be read.
        """
        conf = consumer_config(
            self.settings,
            f"{self.settings.topic_prefix}follow-{uuid.uuid4().hex[:8]}",
            latency_sensitive=False,
            logger=logging.getLogger("librdkafka"),
            **{"fetch.wait.max.ms": self.fetch_wait_ms},
        )
        consumer = Consumer(conf)
        timeout = self.settings.admin_timeout_s
        try:
            md = consumer.list_topics(self.topic.name, timeout=timeout)
            partitions = sorted(md.topics[self.topic.name].partitions)
            ends = [
                TopicPartition(
                    self.topic.name,
                    p,
                    consumer.get_watermark_offsets(
                        TopicPartition(self.topic.name, p), timeout=timeout
                    )[1],
                )
                for p in partitions
            ]
        except (KafkaException, KeyError) as exc:
            consumer.close()
            raise BrokerUnavailable(f"cannot follow {self.topic.name}: {exc}") from exc
        consumer.assign(ends)
        self._consumer = consumer
        self._thread = threading.Thread(
            target=self._run, name=f"follow-{self.topic.base}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._consumer is not None
        while not self._stop.is_set():
            try:
                messages = poll_batch(self._consumer, 500, 0.2)
            except KafkaException as exc:
                self._gap(str(exc))
                continue
            keys = []
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        self._gap(err.str())
                    continue
                key = msg.key()
                if key is not None:
                    keys.append(key.decode(errors="replace") if isinstance(key, bytes) else key)
            if keys:
                self.seen += len(keys)
                self.on_keys(keys)
        self._consumer.close()

    def _gap(self, why: str) -> None:
        """Events may be late (not lost: the position is kept): drop what relies on them."""
        log.warning("following %s interrupted (%s)", self.topic.name, why)
        self.on_gap()

    def stop(self) -> None:
        """Stop following (joins the thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
