"""The composition root: one place that turns settings into wired objects.

Production entry points and tests both call :func:`bootstrap`; tests, benchmarks and the
demo pass a typed :class:`Overrides` (a scripted LLM client, a preloaded embedder, a
consumer group) instead of patching. A running worker publishes a typed handle of its
internals (its consumer loop, its state updater…) in :class:`Handles`, where tests and
benchmarks look them up by type. Nothing is created at import time: pools, producers
and models are built here, lazily where costly, and closed by :meth:`Context.close`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from recsys import db
from recsys.exceptions import ConfigurationError
from streams.producer import RecordProducer, registry_from_settings
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics

if TYPE_CHECKING:
    from recsys.embedding import Embedder
    from recsys.llm.client import LlmClient

__all__ = ["Context", "Handles", "Overrides", "bootstrap"]

log = logging.getLogger(__name__)

H = TypeVar("H")


@dataclass(frozen=True)
class Overrides:
    """Parts a caller provides instead of having them built from settings."""

    #: Topic catalogue, serde and producer (tests share one per session).
    topics: Topics | None = None
    serde: AvroSerde | None = None
    producer: RecordProducer | None = None
    #: The LLM client of enrich/serve (e.g. pointed at the simulated server).
    llm_client: LlmClient | None = None
    #: A loaded embedder (saves the model load in tests and benchmarks).
    embedder: Embedder | None = None
    #: The consumer group of the worker (default: ``<prefix>streamrec-<worker>``).
    group_id: str | None = None


class Handles:
    """Typed handles that running workers publish: one per class, looked up by class."""

    def __init__(self) -> None:
        self._by_type: dict[type, object] = {}

    def put(self, handle: object) -> None:
        """Publish ``handle`` under its own class."""
        self._by_type[type(handle)] = handle

    def all(self) -> list[object]:
        """Every published handle (the observer reads their stats)."""
        return list(self._by_type.values())

    def get(self, kind: type[H]) -> H | None:
        """The published handle of class ``kind`` (None until the worker has started)."""
        found = self._by_type.get(kind)
        return found if isinstance(found, kind) else None

    def require(self, kind: type[H]) -> H:
        """Like :meth:`get`, for a worker known to have started.

        Raises:
            LookupError: no such handle was published.
        """
        found = self.get(kind)
        if found is None:
            raise LookupError(f"no {kind.__name__} handle: has the worker started?")
        return found


@dataclass
class Context:
    """Wired dependencies of one process."""

    settings: Settings
    topics: Topics
    serde: AvroSerde
    producer: RecordProducer
    overrides: Overrides = field(default_factory=Overrides)
    handles: Handles = field(default_factory=Handles)
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
        self, name: str = "streamrec", *, autocommit: bool = False, full: bool = False
    ) -> AsyncConnectionPool:
        """A new opened async pool bound to the running loop (closed by :meth:`aclose`).

        ``full`` opens every connection up front (``db_pool_max``): a latency-sensitive
        worker should not open connections while requests wait for them.

        Waits for Postgres as long as it takes, saying so every 30 s: a worker started
        while the database is down or restarting waits for it instead of exiting, which
        would count as a crash towards the supervisor's give-up rule.
        """
        s = self.settings
        apool = db.async_pool(
            self.dsn,
            min_size=s.db_pool_max if full else s.db_pool_min,
            max_size=s.db_pool_max,
            statement_timeout_ms=s.db_statement_timeout_ms,
            ef_search=s.hnsw_ef_search,
            name=name,
            autocommit=autocommit,
        )
        await apool.open(wait=False)
        self._apools.append(apool)
        waited = 0
        while True:
            try:
                await apool.wait(timeout=30)
                break
            except PoolTimeout:
                waited += 30
                log.warning("%s: Postgres has not answered for %ds; still waiting", name, waited)
        return apool

    @property
    def uses_database(self) -> bool:
        """True once this process opened a Postgres pool."""
        return bool(self._apools) or self._pool is not None

    async def ping_database(self, timeout_s: float = 2.0) -> str | None:
        """None when Postgres answers ``SELECT 1`` on a new connection, else why not.

        A new connection rather than a pooled one: a busy pool is not an unreachable
        database.
        """
        import psycopg

        try:
            async with asyncio.timeout(timeout_s):
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, connect_timeout=max(1, int(timeout_s)), autocommit=True
                )
                async with conn:
                    await conn.execute("SELECT 1")
        except TimeoutError:
            return f"no answer within {timeout_s:.0f}s"
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None

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


def bootstrap(settings: Settings, overrides: Overrides | None = None) -> Context:
    """Wire a :class:`Context` for ``settings``.

    Args:
        settings: the process settings (with broker and database addresses resolved).
        overrides: parts to use instead of building them from the settings.
    """
    o = overrides or Overrides()
    topics = o.topics or Topics(settings)
    serde = o.serde or AvroSerde(registry_from_settings(settings))
    producer = o.producer or RecordProducer(settings, serde, topics)
    return Context(settings, topics, serde, producer, overrides=o)
