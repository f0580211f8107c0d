"""Schema registries: where the id in each message's wire header is looked up.

``LocalRegistry`` is built from ``schemas/`` and needs no server: a schema's id is
derived from the SHA-256 of its Avro *parsing canonical form*, which is exactly what
determines the binary encoding. Ids are therefore stable across processes, machines
and restarts, and every historical version committed under ``schemas/`` keeps its id
so old messages still decode. ``ConfluentRegistry`` talks to a Confluent Schema
Registry (``confluent_kafka.schema_registry``) when its URL is configured.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Protocol

from fastavro.schema import load_schema, parse_schema, to_parsing_canonical_form

from streams.exceptions import SchemaNotFound, SerializationError
from streams.resources import SCHEMAS_DIR

__all__ = [
    "ConfluentRegistry",
    "LocalRegistry",
    "SchemaRegistry",
    "load_avsc",
    "schema_id_of",
]

Schema = dict[str, Any]


def load_avsc(fullname: str, directory: Path = SCHEMAS_DIR) -> Schema:
    """Load ``<fullname>.avsc`` with its named references expanded inline.

    The result is a plain JSON-able schema (shared records such as
    ``streamrec.Evidence`` are inlined), usable by any Avro tool and registry.
    """
    path = directory / f"{fullname}.avsc"
    if not path.is_file():
        raise FileNotFoundError(f"no schema file {path}")
    parsed = load_schema(str(path), _write_hint=False)
    expanded: Schema = json.loads(json.dumps(parsed))
    return expanded


def schema_id_of(schema: Schema) -> int:
    """Stable 31-bit id of a schema: a hash of its parsing canonical form."""
    canonical = to_parsing_canonical_form(parse_schema(schema, _write_hint=False))
    digest = hashlib.sha256(canonical.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF or 1


class SchemaRegistry(Protocol):
    """What the serde needs: the writer id for a subject's schema, and a schema by id."""

    def id_for(self, subject: str, schema: Schema) -> int:
        """Id under which ``schema`` is known for ``subject`` (registering it if needed)."""
        ...

    def schema_for(self, schema_id: int) -> Schema:
        """The writer schema with this id; raises :class:`SchemaNotFound`."""
        ...


class LocalRegistry:
    """In-process registry over the ``.avsc`` files (current and historical versions)."""

    def __init__(self, directory: Path = SCHEMAS_DIR) -> None:
        self._by_id: dict[int, Schema] = {}
        for path in sorted(directory.glob("*.avsc")):
            self.add(load_avsc(path.stem, directory))
        history = directory / "history"
        if history.is_dir():
            for path in sorted(history.glob("*/*.avsc")):
                self.add(json.loads(path.read_text()))

    def add(self, schema: Schema) -> int:
        """Register a schema (idempotent) and return its id."""
        schema_id = schema_id_of(schema)
        known = self._by_id.get(schema_id)
        if known is not None and schema_id_of(known) != schema_id:  # pragma: no cover
            raise SerializationError("schema_id_collision", f"id {schema_id} collides")
        self._by_id.setdefault(schema_id, schema)
        return schema_id

    def id_for(self, subject: str, schema: Schema) -> int:
        return self.add(schema)

    def schema_for(self, schema_id: int) -> Schema:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise SchemaNotFound(schema_id) from None

    def __len__(self) -> int:
        return len(self._by_id)


class ConfluentRegistry:
    """Confluent Schema Registry client with per-process caches.

    Subjects follow the TopicNameStrategy (``<topic>-value``) so Confluent tooling can
    read our topics as-is.
    """

    def __init__(self, url: str, basic_auth: str | None = None, timeout_s: float = 10.0) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf: dict[str, Any] = {"url": url, "timeout": timeout_s}
        if basic_auth:
            conf["basic.auth.user.info"] = basic_auth
        self._client = SchemaRegistryClient(conf)
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, Schema] = {}
        self._lock = threading.Lock()

    def id_for(self, subject: str, schema: Schema) -> int:
        from confluent_kafka.schema_registry import Schema as SrSchema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        text = json.dumps(schema, sort_keys=True)
        key = (subject, text)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        try:
            schema_id = int(self._client.register_schema(subject, SrSchema(text, "AVRO")))
        except SchemaRegistryError as exc:
            raise SerializationError(
                "registry_error", f"schema registry refused {subject}: {exc}"
            ) from exc
        with self._lock:
            self._ids[key] = schema_id
            self._schemas[schema_id] = schema
        return schema_id

    def schema_for(self, schema_id: int) -> Schema:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        with self._lock:
            if schema_id in self._schemas:
                return self._schemas[schema_id]
        try:
            found = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if getattr(exc, "http_status_code", None) == 404:
                raise SchemaNotFound(schema_id) from exc
            raise SerializationError("registry_error", f"schema registry: {exc}") from exc
        if not found.schema_str:
            raise SchemaNotFound(schema_id)
        schema: Schema = json.loads(found.schema_str)
        with self._lock:
            self._schemas[schema_id] = schema
        return schema
