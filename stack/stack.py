"""Bring up what a deployment needs: broker, Postgres, schema, topics (and the local LLM).

Embedded parts are started only when the settings name no external one. The result
is a :class:`Settings` with real addresses filled in, which the supervisor hands to
each worker process through its environment.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from types import TracebackType
from typing import Self

from recsys import db
from stack.embedded import EmbeddedBroker, EmbeddedPostgres
from stack.local_llm.launcher import EmbeddedLlm
from stack.local_llm.wiring import embedded_llm, local_llm_overrides
from streams import admin
from streams.settings import Settings

__all__ = ["Stack"]

log = logging.getLogger(__name__)


class Stack:
    """Context manager for the broker + Postgres pair, embedded or external, and the
    embedded local LLM when ``llm_local`` is on and no endpoint is configured."""

    def __init__(
        self, settings: Settings, *, migrate: bool = True, create_topics: bool = True
    ) -> None:
        self.requested = settings
        self.settings = settings
        self.migrate = migrate
        self.create_topics = create_topics
        self.broker: EmbeddedBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.llm: EmbeddedLlm | None = None
        self.applied: list[db.Migration] = []
        self.topic_report: dict[str, str] = {}
        self._exit = ExitStack()

    def start(self) -> Settings:
        """Start/verify everything; return settings with addresses resolved.

        Raises:
            PortInUse, EmbeddedStackError, BrokerUnavailable, DatabaseUnavailable,
            MigrationError, PartitionMismatch: each with a message a user can act on.
        """
        s = self.settings
        try:
            changes: dict[str, object] = {}
            if s.embedded_broker:
                self.broker = EmbeddedBroker(
                    s.broker_host, s.broker_port, log_dir=s.home / "logs", run_dir=s.home / "run"
                )
                changes["bootstrap_servers"] = self.broker.start()
                # Tansu 0.6 joins a group in about session timeout / 2 and expels a
                # killed member after the timeout: short here, so that a restarted worker
                # gets its partitions back within seconds (docs/operations.md)
                changes["session_timeout_ms"] = s.embedded_session_timeout_ms
                self._exit.callback(self.broker.stop)
            if s.embedded_database:
                s.home.mkdir(parents=True, exist_ok=True)
                self.postgres = EmbeddedPostgres(s.pg_data_dir)
                changes["database_url"] = self.postgres.start()
                self._exit.callback(self.postgres.stop)
            if s.llm_local and not s.llm_base_url:
                self.llm = embedded_llm(s)
                self.llm.start()
                self._exit.callback(self.llm.stop)
                changes.update(local_llm_overrides(s, self.llm))
            if changes:
                s = s.with_overrides(**changes)
            self.settings = s
            admin.probe(s)
            assert s.database_url is not None
            dsn = s.database_url.get_secret_value()
            db.wait_for_database(dsn)
            if self.migrate:
                self.applied = db.apply_migrations(dsn)
            if self.create_topics:
                self.topic_report = admin.ensure_topics(s)
        except BaseException:
            self.stop()
            raise
        return s

    def stop(self) -> None:
        """Stop what this stack started (external services are left alone)."""
        self._exit.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
