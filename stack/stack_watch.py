"""`streamrec up` watches the embedded broker and Postgres as it watches the workers.

* **Postgres** died: it is started again on the same data directory. Everything committed
  is there; workers retried their batches meanwhile (Postgres away is a retry, never a
  skip), so nothing is lost or doubled.
* **The broker** died: its topics lived in memory and are gone — messages not yet
  consumed, dead letters, committed offsets. Every worker is stopped (none of the old
  consumers may join a group of the new broker and leave a member behind that the new
  ones would wait for), the broker is started again, empty, on the same port, the topics
  are created again and the workers are started, each from offset 0 of the new topics.
  Positions kept outside Kafka (user state, the archive) name the topic incarnation they
  belong to, so the new topics' offsets are not mistaken for old ones. What was lost is
  said at ERROR level, with the message counts last seen.

Either part failing again and again (the restart policy of :mod:`stack.restarts`) raises
:class:`~stack.exceptions.GaveUp`: `up` stops the stack with that message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from stack.exceptions import GaveUp
from stack.restarts import RestartPolicy, RestartState
from stack.stack import Stack
from streams import admin
from streams.exceptions import BrokerUnavailable, EmbeddedStackError
from streams.lag import topic_sizes
from streams.topics import Topics

__all__ = ["StackWatch"]

log = logging.getLogger(__name__)

#: How often the sizes of the broker's topics are sampled (to say what a crash lost).
_SIZES_EVERY_S = 10.0


class StackWatch:
    """Restarts a dead embedded broker or Postgres of ``stack``; gives up per the policy."""

    def __init__(
        self,
        stack: Stack,
        policy: RestartPolicy,
        stop_workers: Callable[[], None],
        start_workers: Callable[[], None],
    ) -> None:
        self.stack = stack
        self.policy = policy
        self.stop_workers = stop_workers
        self.start_workers = start_workers
        self.postgres = RestartState(policy)
        self.broker = RestartState(policy)
        self._pg_down_since: float | None = None
        self._broker_down_since: float | None = None
        self._sizes: dict[str, int] = {}
        self._sizes_at = -_SIZES_EVERY_S

    def check(self) -> None:
        """Look at both parts once; restart what died and is due.

        Raises:
            GaveUp: a part failed ``policy.max_failures`` times in a row.
        """
        self._check_postgres()
        self._check_broker()

    # ---- Postgres -------------------------------------------------------------------------
    def _check_postgres(self) -> None:
        pg = self.stack.postgres
        if pg is None:
            return
        now = time.monotonic()
        if self._pg_down_since is None:
            if pg.running:
                return
            self._pg_down_since = now
            log.error(
                "embedded Postgres (data in %s) exited with code %s after %.0fs; starting it "
                "again on the same data directory — committed data is kept, workers retry "
                "their batches meanwhile",
                pg.data_dir,
                pg.exit_code,
                self.postgres.uptime(now),
            )
            if not self.postgres.failed(now):
                self._give_up("embedded Postgres", self.postgres, pg.data_dir / "server.log")
        if self.postgres.due_at is not None and now < self.postgres.due_at:
            return
        try:
            pg.start()
        except EmbeddedStackError as exc:
            log.error("embedded Postgres did not start again: %s", str(exc)[-500:])
            self.postgres.started(now)  # a failed start is a failed run
            if not self.postgres.failed(time.monotonic()):
                self._give_up("embedded Postgres", self.postgres, pg.data_dir / "server.log")
            return
        down = time.monotonic() - self._pg_down_since
        self._pg_down_since = None
        self.postgres.started()
        log.warning(
            "embedded Postgres is back (pid %s) after %.1fs down; nothing committed was lost",
            pg.pid,
            down,
        )

    # ---- the broker -----------------------------------------------------------------------
    def _sample_sizes(self, now: float) -> None:
        """Remember the topics' sizes now and then: after a crash they say what was lost."""
        if now - self._sizes_at < _SIZES_EVERY_S:
            return
        self._sizes_at = now
        names = [t.name for t in Topics(self.stack.settings)]
        try:
            self._sizes = topic_sizes(self.stack.settings, names)
        except Exception as exc:  # a sample is best effort; never stops `up`
            log.debug("topic sizes unavailable: %s", exc)

    def _check_broker(self) -> None:
        broker = self.stack.broker
        if broker is None:
            return
        now = time.monotonic()
        if self._broker_down_since is None:
            if broker.running:
                self._sample_sizes(now)
                return
            self._broker_down_since = now
            held = {t: n for t, n in sorted(self._sizes.items()) if n}
            log.error(
                "the embedded broker (pid %s) exited with code %s after %.0fs. Its topics "
                "lived in memory and are gone: messages not consumed yet, dead letters and "
                "committed offsets are lost (messages the topics held %.0fs before: %s). "
                "Producers still running deliver what they had not delivered yet once it "
                "is back. Stopping the workers, starting the broker again, empty, on %s, "
                "creating the topics and starting the workers, each from offset 0 of the "
                "new topics.",
                broker.pid,
                broker.exit_code,
                self.broker.uptime(now),
                now - self._sizes_at,
                ", ".join(f"{t} {n}" for t, n in held.items()) or "none",
                broker.bootstrap,
            )
            self.stop_workers()
            if not self.broker.failed(now):
                self._give_up("the embedded broker", self.broker, None)
        if self.broker.due_at is not None and now < self.broker.due_at:
            return
        try:
            broker.start()
            report = admin.ensure_topics(self.stack.settings)
        except (EmbeddedStackError, BrokerUnavailable) as exc:
            log.error("the embedded broker did not start again: %s", exc)
            self.broker.started(now)
            if not self.broker.failed(time.monotonic()):
                self._give_up("the embedded broker", self.broker, None)
            return
        down = time.monotonic() - self._broker_down_since
        self._broker_down_since = None
        self._sizes = {}
        self.broker.started()
        created = sum(1 for v in report.values() if v == "created")
        log.warning(
            "the embedded broker is back (pid %s) after %.1fs down, %d topics created again; "
            "starting the workers",
            broker.pid,
            down,
            created,
        )
        self.start_workers()

    def _give_up(self, what: str, state: RestartState, logfile: object) -> None:
        where = f"; see {logfile}" if logfile else ""
        raise GaveUp(
            f"{what} failed {state.failures} times in a row, each within "
            f"{self.policy.healthy_after_s:.0f}s of starting{where}; stopping the stack"
        )
