"""Knowing when everything produced on behalf of one input message is acknowledged.

A pipelined consumer (:mod:`streams.pipelined_loop`) may commit an input's offset only
once every message produced because of it — the response, its LLM-log records, a dead
letter — is acknowledged by the broker. Instead of a blocking ``flush()`` per batch,
each input gets a :class:`DeliveryGroup`; while it is the current group (a context
variable, so each asyncio task that handles one input has its own),
:meth:`RecordProducer.send_raw <streams.producer.RecordProducer.send_raw>` counts the
message in and its delivery report counts it out. When the handler is done
(:meth:`seal`) and nothing is pending, the group is *settled* and calls ``on_settled``
— from whichever thread served the delivery report (librdkafka's poll), so the callback
must be thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

__all__ = ["DeliveryGroup", "current_group"]


class DeliveryGroup:
    """The messages produced for one input, counted until all are acknowledged.

    Attributes:
        key: what the owner uses to recognise the group (e.g. ``(topic, partition,
            offset)`` of the input).
        errors: delivery failures (the broker rejected or timed out a message).
    """

    __slots__ = ("_lock", "_on_settled", "_pending", "_sealed", "_settled", "errors", "key")

    def __init__(self, key: Any, on_settled: Callable[[DeliveryGroup], None]) -> None:
        self.key = key
        self.errors: list[str] = []
        self._on_settled = on_settled
        self._pending = 0
        self._sealed = False
        self._settled = False
        self._lock = threading.Lock()

    def sent(self) -> None:
        """One more message is on its way (called before it is handed to librdkafka)."""
        with self._lock:
            if self._settled:
                raise RuntimeError(f"delivery group {self.key} already settled")
            self._pending += 1

    def delivered(self, error: str | None = None) -> None:
        """A delivery report arrived (``error`` set when the message was not delivered)."""
        with self._lock:
            self._pending -= 1
            if error is not None:
                self.errors.append(error)
            ready = self._ready()
        if ready:
            self._on_settled(self)

    def seal(self) -> None:
        """No more messages will be produced for this input."""
        with self._lock:
            self._sealed = True
            ready = self._ready()
        if ready:
            self._on_settled(self)

    @property
    def pending(self) -> int:
        """Messages sent and not acknowledged yet."""
        return self._pending

    def _ready(self) -> bool:
        if self._sealed and self._pending == 0 and not self._settled:
            self._settled = True
            return True
        return False


#: The group messages produced now belong to (None: nobody is counting).
current_group: ContextVar[DeliveryGroup | None] = ContextVar("delivery_group", default=None)
