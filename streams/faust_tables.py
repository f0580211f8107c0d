"""Faust tables for keyed state: explicit changelog partitions, awaitable writes.

Faust's ``table[key] = value`` sends the changelog record to the partition of the
*current event*. A worker that batches (``stream.take_events``) and writes once per key
per batch has no meaningful current event — the last event of the batch may come from
another partition — so :meth:`KeyedStateTable.put` names the partition (the source
partition of that key's events, which is the key's partition: topics are
co-partitioned) and returns the delivery future. Awaiting those before the batch is
acknowledged is what makes the changelog durable before the offsets that
produced it are committed.

Values are pydantic models stored as JSON through :class:`PydanticJsonCodec`, so the
in-memory table holds models (no decode per read) and recovery from the changelog
rebuilds them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Generic, TypeVar

import faust
from faust.serializers import codecs
from pydantic import BaseModel

__all__ = ["KeyedStateTable", "PydanticJsonCodec", "keyed_state_table"]

M = TypeVar("M", bound=BaseModel)


class PydanticJsonCodec(codecs.Codec, Generic[M]):
    """Faust codec for one pydantic model, as its JSON."""

    def __init__(self, model: type[M]) -> None:
        super().__init__(model=model.__name__)
        self.model = model

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, self.model):
            return obj.model_dump_json().encode()
        return self.model.model_validate(obj).model_dump_json().encode()

    def _loads(self, s: bytes) -> Any:
        return self.model.model_validate_json(s)


class KeyedStateTable(faust.Table):
    """A changelog-backed table written once per key per batch."""

    def __init__(self, app: faust.App, *, value_codec: str, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        # Faust derives serializers from value_type; ours is a registered codec (the
        # store and changelog topic are created lazily, after this).
        self.value_serializer = value_codec

    async def put(self, key: bytes, value: Any, partition: int) -> Awaitable[Any]:
        """Set ``key`` in memory and hand it to the producer for changelog ``partition``.

        Returns the delivery future: await it to know the broker has the record. This
        skips Faust's send-soon buffer, which drains one record at a time and is meant
        for writes from synchronous code.
        """
        self.data[key] = value
        return await self.changelog_topic.send(
            key=key,
            value=value,
            partition=partition,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            callback=self._on_changelog_sent,
        )

    def value(self, key: bytes) -> Any:
        """The value of ``key``, or None."""
        return self.data.get(key)


def keyed_state_table(
    app: faust.App, name: str, model: type[BaseModel], partitions: int
) -> KeyedStateTable:
    """Declare a :class:`KeyedStateTable` of ``model`` values with bytes keys on ``app``."""
    codec_name = f"pydantic-json-{model.__module__}.{model.__name__}"
    codecs.register(codec_name, PydanticJsonCodec(model))
    table = KeyedStateTable(
        app,
        name=name,
        default=None,
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=bytes,
        value_codec=codec_name,
    )
    app.tables.add(table)
    return table
