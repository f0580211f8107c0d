"""Postgres access: connection pools and the migration runner.

Pools are created closed and opened by the composition root, so importing this
module never connects. Every pooled connection gets pgvector's type adapters and the
configured statement timeout. The schema lives only in ``migrations/NNNN_name.sql``;
:func:`apply_migrations` applies the missing ones in order, each in its own
transaction, under an advisory lock (two processes starting at once do not race),
and refuses to run if an applied file was edited afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from recsys.exceptions import DatabaseError, DatabaseUnavailable, DataRejected, MigrationError

__all__ = [
    "MIGRATIONS_DIR",
    "Migration",
    "apply_migrations",
    "async_pool",
    "connection",
    "db_error",
    "discover_migrations",
    "error_kind",
    "pool",
    "wait_for_database",
]

log = logging.getLogger(__name__)

_CHECKOUT = Path(__file__).resolve().parent.parent / "migrations"
_BUNDLED = Path(__file__).resolve().parent / "_bundled" / "migrations"
#: The folder of numbered SQL migrations (checkout or wheel).
MIGRATIONS_DIR = _CHECKOUT if _CHECKOUT.is_dir() else _BUNDLED

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x5354_5245  # "STRE"


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    path: Path

    @property
    def sql_text(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql_text.encode()).hexdigest()


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All ``NNNN_name.sql`` files in version order; duplicate numbers are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share number {version:04d}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def _connect(dsn: str, timeout_s: float = 10.0) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s)), autocommit=True)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to Postgres: {exc}".strip()) from exc


def wait_for_database(dsn: str, timeout_s: float = 10.0) -> str:
    """Connect once and return the server version, or raise :class:`DatabaseUnavailable`."""
    with _connect(dsn, timeout_s) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply the missing migrations in order; return those applied now.

    Raises:
        MigrationError: a migration failed (its transaction is rolled back), or an
            applied migration's file changed since (its checksum differs).
        DatabaseUnavailable: Postgres cannot be reached.
    """
    migrations = discover_migrations(directory)
    applied_now: list[Migration] = []
    with _connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            done = {
                int(v): c
                for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")
            }
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.path.name} was edited after it was applied; "
                            "add a new migration instead of changing an applied one"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(sql.SQL(migration.sql_text))  # type: ignore[arg-type,unused-ignore]
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) "
                            "VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.path.name} failed: {exc}") from exc
                log.info("applied migration %s", migration.path.name)
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def _configure_sync(statement_timeout_ms: int, ef_search: int):  # type: ignore[no-untyped-def]
    def configure(conn: psycopg.Connection) -> None:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
        conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
        conn.commit()

    return configure


def _configure_async(statement_timeout_ms: int, ef_search: int):  # type: ignore[no-untyped-def]
    async def configure(conn: psycopg.AsyncConnection) -> None:
        from pgvector.psycopg import register_vector_async

        await register_vector_async(conn)
        await conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
        await conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
        # filtered ANN keeps scanning until it has k rows (pgvector >= 0.8)
        await conn.execute("SET hnsw.iterative_scan = relaxed_order")
        if not conn.autocommit:
            await conn.commit()

    return configure


def pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    statement_timeout_ms: int = 5000,
    ef_search: int = 100,
    name: str = "streamrec",
) -> ConnectionPool:
    """A closed connection pool; the caller opens it (``pool.open(wait=True)``)."""
    return ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        configure=_configure_sync(statement_timeout_ms, ef_search),
        reconnect_timeout=60,
    )


def async_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    statement_timeout_ms: int = 5000,
    ef_search: int = 100,
    name: str = "streamrec",
    autocommit: bool = False,
) -> AsyncConnectionPool:
    """A closed async pool; open it inside the running loop (``await pool.open()``).

    ``autocommit`` suits read-mostly users (serving): each statement is its own
    transaction, so returning a connection costs no COMMIT round trip; explicit
    ``conn.transaction()`` blocks still group writes.
    """
    return AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        configure=_configure_async(statement_timeout_ms, ef_search),
        kwargs={"autocommit": True} if autocommit else None,
        reconnect_timeout=60,
    )


#: SQLSTATE classes caused by the values a statement carries: data exception (22: NUL or
#: invalid bytes in text, numbers out of range), integrity constraint violation (23),
#: program limit exceeded (54: an index row over its size limit). Same values, same error.
DATA_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})
#: SQLSTATE classes of trouble that passes: connection exception (08), transaction
#: rollback (40: serialization failure, deadlock), insufficient resources (53), operator
#: intervention (57: shutdown, statement timeout), system error (58).
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
#: Single transient codes in other classes: lock not available, object in use.
TRANSIENT_SQLSTATES = frozenset({"55P03", "55006"})


def error_kind(exc: BaseException) -> str:
    """``"data"``, ``"transient"`` or ``"bug"``: what a failed statement calls for.

    * data — the statement's values were refused (SQLSTATE classes 22, 23, 54, or
      refused before sending: psycopg's "text fields cannot contain NUL", text that
      cannot be encoded); the record carrying them is dead-lettered;
    * transient — Postgres unreachable, restarting, overloaded, a deadlock, a statement
      timeout; the same work is retried with backoff;
    * bug — anything else (syntax, a missing table or column, a type mismatch in our
      SQL): the worker stops loudly rather than skipping input.

    SQLSTATE decides before the DB-API class: psycopg files "program limit exceeded"
    under ``OperationalError``, which would otherwise be retried forever.
    """
    if isinstance(exc, UnicodeEncodeError):
        return "data"
    if not isinstance(exc, psycopg.Error):
        return "bug"
    state = exc.sqlstate or ""
    if state[:2] in DATA_SQLSTATE_CLASSES:
        return "data"
    if state[:2] in TRANSIENT_SQLSTATE_CLASSES or state in TRANSIENT_SQLSTATES:
        return "transient"
    if not state and isinstance(exc, psycopg.DataError):  # refused client-side (NUL)
        return "data"
    if isinstance(exc, psycopg.OperationalError) and not state:  # no connection, pool timeout
        return "transient"
    return "bug"


def db_error(exc: BaseException, what: str) -> Exception:
    """The domain error for a failed statement (see :func:`error_kind`).

    Returns:
        :class:`DataRejected` (dead-letter the record), :class:`DatabaseUnavailable`
        (retry) or :class:`DatabaseError` (a bug: stop).
    """
    text = str(exc).strip()
    state = getattr(exc, "sqlstate", None)
    detail = f"{what}: {text}" + (f" (SQLSTATE {state})" if state else "")
    kind = error_kind(exc)
    if kind == "data":
        return DataRejected(detail)
    if kind == "transient":
        return DatabaseUnavailable(f"Postgres unavailable: {detail}")
    return DatabaseError(detail)


@asynccontextmanager
async def connection(
    pool: AsyncConnectionPool, what: str, timeout_s: float
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection whose failures surface as :func:`db_error` ones."""
    try:
        async with pool.connection(timeout=timeout_s) as conn:
            yield conn
    except (psycopg.Error, UnicodeEncodeError) as exc:
        raise db_error(exc, what) from exc
