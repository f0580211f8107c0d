"""The composition root: one place that turns settings into wired objects.

Production entry points and tests both call :func:`bootstrap`; tests pass overrides
(an in-memory exporter, a scripted LLM URL) instead of patching. Nothing is created
at import time: pools, producers and models are built here, lazily where costly,
and closed by :meth:`Context.close`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from recsys import db
from recsys.exceptions import ConfigurationError
from streams.producer import RecordProducer, registry_from_settings
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics

__all__ = ["Context", "bootstrap"]

log = logging.getLogger(__name__)


@dataclass
class Context:
    """Wired dependencies of one process."""

    settings: Settings
    topics: Topics
    serde: AvroSerde
    producer: RecordProducer
    extras: dict[str, Any] = field(default_factory=dict)
    _pool: ConnectionPool | None = None
    _apools: list[AsyncConnectionPool] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        """The Postgres DSN (external, or the embedded one filled in by the stack)."""
        if self.settings.database_url is None:
            raise ConfigurationError(
                "no database: set STREAMREC_DATABASE_URL, or run through `streamrec up`, "
                "which starts the embedded Postgres and passes its DSN to the workers"
            )
        return self.settings.database_url.get_secret_value()

    def pool(self) -> ConnectionPool:
        """The process's sync connection pool, opened on first use."""
        if self._pool is None:
            s = self.settings
            self._pool = db.pool(
                self.dsn,
                min_size=s.db_pool_min,
                max_size=s.db_pool_max,
                statement_timeout_ms=s.db_statement_timeout_ms,
                ef_search=s.hnsw_ef_search,
            )
            self._pool.open(wait=True, timeout=30)
        return self._pool

    async def async_pool(
        self, name: str = "streamrec", *, autocommit: bool = False
    ) -> AsyncConnectionPool:
        """A new opened async pool bound to the running loop (closed by :meth:`aclose`)."""
        s = self.settings
        apool = db.async_pool(
            self.dsn,
            min_size=s.db_pool_min,
            max_size=s.db_pool_max,
            statement_timeout_ms=s.db_statement_timeout_ms,
            ef_search=s.hnsw_ef_search,
            name=name,
            autocommit=autocommit,
        )
        await apool.open(wait=True, timeout=30)
        self._apools.append(apool)
        return apool

    async def aclose(self) -> None:
        """Close async pools (inside their loop), then everything else."""
        for apool in self._apools:
            await apool.close()
        self._apools.clear()
        self.close()

    def close(self) -> None:
        """Flush the producer and close pools."""
        try:
            self.producer.close()
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def bootstrap(settings: Settings, **overrides: Any) -> Context:
    """Wire a :class:`Context` for ``settings``.

    Args:
        settings: the process settings (with broker and database addresses resolved).
        overrides: replacements for wired parts (``serde``, ``producer``, ``topics``) or
            extra objects for workers (kept in ``Context.extras``).
    """
    topics = overrides.pop("topics", None) or Topics(settings)
    serde = overrides.pop("serde", None) or AvroSerde(registry_from_settings(settings))
    producer = overrides.pop("producer", None) or RecordProducer(settings, serde, topics)
    return Context(settings, topics, serde, producer, extras=dict(overrides))
