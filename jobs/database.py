"""The Postgres a one-shot job works on: the external DSN, or the embedded one."""

from __future__ import annotations

from collections.abc import Callable

from recsys import db
from stack.embedded import EmbeddedPostgres
from streams.settings import Settings

__all__ = ["open_database"]


def open_database(
    settings: Settings, database: str | None = None, *, migrate: bool = True
) -> tuple[str, Callable[[], None]]:
    """The DSN to use (migrated unless ``migrate`` is False) and how to let go of it.

    ``database`` wins over the settings' DSN; with neither, the embedded Postgres under
    the settings' home is started (or adopted when `streamrec up` already runs it) and
    stopped again by the returned callable if this call started it.

    Raises:
        DatabaseUnavailable, MigrationError: with a message a user can act on.
    """
    dsn = database or (settings.database_url.get_secret_value() if settings.database_url else None)
    if dsn is not None:
        db.wait_for_database(dsn)
        if migrate:
            db.apply_migrations(dsn)
        return dsn, lambda: None
    settings.home.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(settings.pg_data_dir)
    dsn = pg.start()
    if migrate:
        db.apply_migrations(dsn)
    return dsn, (lambda: None) if pg.adopted else pg.stop
