"""Policy versions in Postgres (``migrations/0300_policies.sql``), and how serving follows
the active one.

A version is written inactive (:meth:`PgPolicies.write`) and activated in one
transaction (:meth:`PgPolicies.activate`): the old row is deactivated and the new one
activated together, and a unique partial index allows at most one active row, so a
reader sees the old version or the new one, never none or two. Versions are never
edited: a new definition is a new version.

:class:`PolicyFollower` keeps a serving process on the active version: every
``refresh_s`` seconds it reads the active version's name (one indexed row), and only
when that name changed does it load the definition and swap the policy — whole, in one
assignment, so a request in flight finishes on the policy it started with. Without an
active version the settings' policy serves.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.exceptions import ConfigurationError, DatabaseError
from recsys.policy.model import Policy

__all__ = ["PgPolicies", "PolicyFollower", "new_version", "read_policies"]

log = logging.getLogger(__name__)

_ACTIVATE_LOCK = 0x504F_4C49  # "POLI"


def new_version(policy: Policy, now: datetime | None = None) -> str:
    """``policy-20261202T013000Z-<fingerprint>-<random>``: sorts by time, unique."""
    now = now or datetime.now(UTC)
    return (
        f"policy-{now.strftime('%Y%m%dT%H%M%SZ')}-{policy.fingerprint()[:6]}-{secrets.token_hex(2)}"
    )


class PgPolicies:
    """Policy versions: write, activate, read the active one."""

    def __init__(self, pool: AsyncConnectionPool, acquire_timeout_s: float = 10.0) -> None:
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return db.connection(self.pool, "policy store", self.acquire_timeout_s)

    async def write(
        self,
        policy: Policy,
        *,
        source: str,
        parent_version: str | None = None,
        report: dict[str, Any] | None = None,
        version: str | None = None,
    ) -> Policy:
        """Store ``policy`` as a new inactive version; return it under that version."""
        version = version or new_version(policy)
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO serving_policies (version, definition, fingerprint, source, "
                "parent_version, report) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    version,
                    Jsonb(policy.definition()),
                    policy.fingerprint(),
                    source,
                    parent_version,
                    Jsonb(report or {}),
                ),
            )
        return policy.versioned(version)

    async def activate(self, version: str) -> None:
        """Make ``version`` the only active one, atomically.

        Raises:
            ConfigurationError: no such version.
        """
        async with self._conn() as conn, conn.transaction():
            # activations queue up behind each other (one switch at a time)
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ACTIVATE_LOCK,))
            cur = await conn.execute(
                "SELECT version FROM serving_policies WHERE version = %s FOR UPDATE", (version,)
            )
            if await cur.fetchone() is None:
                raise ConfigurationError(f"no policy version {version!r}")
            await conn.execute(
                "UPDATE serving_policies SET active = false WHERE active AND version <> %s",
                (version,),
            )
            await conn.execute(
                "UPDATE serving_policies SET active = true, activated_at = now() "
                "WHERE version = %s AND NOT active",
                (version,),
            )

    async def active_version(self) -> str | None:
        """The active version's name (the cheap check serving polls)."""
        async with self._conn() as conn:
            cur = await conn.execute("SELECT version FROM serving_policies WHERE active")
            row = await cur.fetchone()
        return row[0] if row else None

    async def load(self, version: str) -> Policy:
        """A stored version.

        Raises:
            ConfigurationError: no such version, or its definition does not parse.
        """
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT definition FROM serving_policies WHERE version = %s", (version,)
            )
            row = await cur.fetchone()
        if row is None:
            raise ConfigurationError(f"no policy version {version!r}")
        try:
            return Policy.from_definition(row[0], version)
        except ValueError as exc:
            raise ConfigurationError(f"policy version {version!r}: {exc}") from exc

    async def active(self) -> Policy | None:
        """The active policy, or None when no version is active."""
        version = await self.active_version()
        return await self.load(version) if version is not None else None

    async def versions(self, limit: int = 50) -> list[dict[str, Any]]:
        """Stored versions, newest first (version, created_at, source, active, …)."""
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT version, created_at, source, parent_version, active, activated_at, "
                "fingerprint FROM serving_policies ORDER BY created_at DESC, version DESC "
                "LIMIT %s",
                (limit,),
            )
            cols = [d.name for d in cur.description or []]
            return [dict(zip(cols, row, strict=True)) for row in await cur.fetchall()]


def read_policies(dsn: str, versions: list[str]) -> tuple[Policy | None, dict[str, Policy]]:
    """The active policy and the named versions, read once without an event loop (for
    jobs that may run inside one, e.g. ``evaluate`` called from async code).

    Raises:
        ConfigurationError: a named version does not exist or does not parse.
        DatabaseUnavailable, DatabaseError: Postgres trouble.
    """
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT version, definition FROM serving_policies WHERE active"
            ).fetchone()
            found = {
                v: conn.execute(
                    "SELECT definition FROM serving_policies WHERE version = %s", (v,)
                ).fetchone()
                for v in versions
            }
    except psycopg.Error as exc:
        raise db.db_error(exc, "policy store") from exc
    missing = [v for v, r in found.items() if r is None]
    if missing:
        raise ConfigurationError(f"no policy version {missing[0]!r}")
    try:
        active = Policy.from_definition(row[1], row[0]) if row else None
        named = {v: Policy.from_definition(r[0], v) for v, r in found.items() if r is not None}
    except ValueError as exc:
        raise ConfigurationError(f"a stored policy does not parse: {exc}") from exc
    return active, named


class PolicyFollower:
    """Keeps a holder's ``policy`` on the active version (the settings' one without).

    Args:
        store: where versions live.
        fallback: the policy that serves when no version is active.
        apply: called with each new policy (e.g. ``setattr(recommender, "policy", p)``).
        refresh_s: seconds between checks.
    """

    def __init__(
        self,
        store: PgPolicies,
        fallback: Policy,
        apply: Callable[[Policy], None],
        refresh_s: float,
    ) -> None:
        self.store = store
        self.fallback = fallback
        self.apply = apply
        self.refresh_s = refresh_s
        self.current: Policy = fallback
        #: Checks done and switches made (tests wait on them instead of sleeping).
        self.checks = 0
        self.switches = 0

    async def refresh(self) -> Policy:
        """Check once; switch when the active version changed. Returns the current policy."""
        version = await self.store.active_version()
        self.checks += 1
        if (version or self.fallback.version) == self.current.version:
            return self.current
        policy = await self.store.load(version) if version is not None else self.fallback
        self.apply(policy)
        self.current = policy
        self.switches += 1
        log.info("serving policy %s is now active", policy.version)
        return policy

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``refresh_s`` seconds until ``stop`` is set; Postgres trouble is
        logged and the current policy kept."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.refresh_s)
                return
            except TimeoutError:
                pass
            try:
                await self.refresh()
            except (DatabaseError, ConfigurationError) as exc:
                log.warning("policy check failed, keeping %s: %s", self.current.version, exc)
