"""Where batch CF reads its events: Postgres ``user_events`` or the Avro archive.

Both yield :class:`~recsys.cf.interactions.Interaction` in any order, limited to
``since <= occurred_at < until`` (event time, either bound optional). Postgres rows
are unique by ``event_id`` already; the archive may hold an event twice (a producer
retry is a new offset), so it is deduplicated by ``event_id`` here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.archive import list_files, read_archive
from recsys.cf.interactions import Interaction
from recsys.exceptions import DataNotFound

__all__ = ["archive_interactions", "count_postgres_events", "postgres_interactions"]


def _where(since: datetime | None, until: datetime | None) -> tuple[str, dict[str, Any]]:
    clauses = ["item_id IS NOT NULL"]
    params: dict[str, Any] = {}
    if since is not None:
        clauses.append("occurred_at >= %(since)s")
        params["since"] = since
    if until is not None:
        clauses.append("occurred_at < %(until)s")
        params["until"] = until
    return " AND ".join(clauses), params


async def count_postgres_events(
    pool: AsyncConnectionPool, since: datetime | None = None, until: datetime | None = None
) -> int:
    """How many item events the window holds (the progress bar's total)."""
    where, params = _where(since, until)
    try:
        async with pool.connection() as conn:
            await conn.execute("SET statement_timeout = 0")
            cur = await conn.execute(f"SELECT count(*) FROM user_events WHERE {where}", params)
            row = await cur.fetchone()
    except psycopg.Error as exc:
        raise db.db_error(exc, "reading user_events") from exc
    return int(row[0]) if row else 0


async def postgres_interactions(
    pool: AsyncConnectionPool,
    since: datetime | None = None,
    until: datetime | None = None,
    batch: int = 20_000,
) -> AsyncIterator[Interaction]:
    """Stream the window's item events through a server-side cursor."""
    where, params = _where(since, until)
    query = (
        "SELECT user_id, item_id, event_type, rating, extract(epoch FROM occurred_at) "
        f"FROM user_events WHERE {where}"
    )
    try:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = 0")
            async with conn.cursor(name="cf_training_events") as cur:
                cur.itersize = batch
                await cur.execute(query, params)
                async for user_id, item_id, event_type, rating, at in cur:
                    yield Interaction(
                        user_id,
                        item_id,
                        event_type,
                        None if rating is None else float(rating),
                        float(at),
                    )
    except psycopg.Error as exc:
        raise db.db_error(exc, "reading user_events") from exc


def archive_interactions(
    root: Path,
    topic: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[Interaction]:
    """Archived ``user.events`` of the window, each ``event_id`` once.

    Raises:
        DataNotFound: the archive has no file of that topic.
    """
    if not list_files(root, topic):
        raise DataNotFound(
            f"no archived user events under {Path(root) / topic}; the archive worker writes "
            "them when STREAMREC_ARCHIVE_USER_EVENTS=true"
        )
    lo = since.timestamp() if since is not None else None
    hi = until.timestamp() if until is not None else None
    seen: set[str] = set()
    for message in read_archive(root, topic):
        value = message.value
        item_id = value.get("item_id")
        event_id = value.get("event_id")
        if not item_id or not event_id or event_id in seen:
            continue
        seen.add(str(event_id))
        at = _epoch_s(value.get("occurred_at"))
        if (lo is not None and at < lo) or (hi is not None and at >= hi):
            continue
        rating = value.get("rating")
        yield Interaction(
            str(value["user_id"]),
            str(item_id),
            str(value["event_type"]),
            None if rating is None else float(rating),
            at,
        )


def _epoch_s(value: Any) -> float:
    """An Avro timestamp as decoded by fastavro (datetime) or raw millis."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value) / 1000.0
    raise ValueError(f"unreadable occurred_at {value!r}")
