"""`streamrec up` supervises: a worker that keeps failing stops the stack loudly (exit 2,
one clear line, nothing left running); a killed embedded Postgres is started again on
its data directory and the users worker goes on with nothing lost or doubled."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from recsys.users.state import fold
from stack.embedded import EmbeddedPostgres, free_port
from streams.settings import Settings
from testkit.up_process import UpProcess
from tests.helpers import wait_until
from tests.integration.users_harness import (
    USERS_OVERRIDES,
    assert_exact,
    make_log,
    publish,
    user_config,
)

pytestmark = pytest.mark.slow


def _no_orphans(pids: list[int]) -> None:
    procs = [psutil.Process(p) for p in pids if psutil.pid_exists(p)]
    _gone, alive = psutil.wait_procs(procs, timeout=30)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "orphans left behind"


def test_a_worker_that_keeps_failing_stops_the_stack(tmp_path: Path) -> None:
    """Each start of serve fails (its model cannot load): after 3 failures in a row `up`
    stops everything, says which worker and why to look, and exits 2 — it does not
    restart it forever."""
    up = UpProcess(
        tmp_path,
        free_port(),
        "--workers",
        "serve",
        STREAMREC_EMBEDDING_MODEL=str(tmp_path / "no-such-model"),
        STREAMREC_RESTART_MAX_FAILURES="3",
        STREAMREC_SERVE_REPLICAS="1",
    )
    try:
        up.wait_for("Ctrl-C")
        pids = [p.pid for p in up.descendants()]
        code = up.proc.wait(240)
    finally:
        if up.proc.poll() is None:
            up.kill()
    out = up.drain()
    assert code == 2, out
    assert "worker serve failed 3 times in a row" in out
    assert "stopping the stack" in out
    assert out.count("worker serve exited with") == 2  # restarted twice, then given up
    _no_orphans(pids)


def _event_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM user_events").fetchone()
    return int(row[0]) if row else 0


def test_a_killed_postgres_is_started_again_and_nothing_is_lost(tmp_path: Path) -> None:
    port = free_port()
    env = {f"STREAMREC_{k.upper()}": str(v) for k, v in USERS_OVERRIDES.items()}
    up = UpProcess(tmp_path, port, "--workers", "users", **env)
    s = Settings(home=tmp_path, bootstrap_servers=f"127.0.0.1:{port}", **USERS_OVERRIDES)  # type: ignore[arg-type]
    pg = EmbeddedPostgres(s.pg_data_dir)
    dsn = pg.dsn()
    log = make_log(n_users=10, n_events=600, seed=21)
    distinct = len({e.event_id for e in log})
    try:
        up.wait_for("Ctrl-C")
        publish(s, log[:200])
        wait_until(lambda: _event_count(dsn) > 100, 120, 0.2, what="events stored")
        postmaster = pg.pid
        assert postmaster is not None
        os.kill(postmaster, signal.SIGKILL)
        killed = time.monotonic()
        publish(s, log[200:400])  # while Postgres is down: the batch is retried
        up.wait_for("embedded Postgres (data in", 30)
        back = up.wait_for("embedded Postgres is back", 120)
        assert time.monotonic() - killed < 60, back
        assert pg.pid != postmaster
        publish(s, log[400:])
        wait_until(lambda: _event_count(dsn) == distinct, 180, 0.3, what="every event stored")
        expected = fold(log, user_config(s))
        assert sum(st.events for st in expected.values()) == distinct
        assert_exact(dsn, log, s)  # nothing lost, nothing counted twice
        assert "worker users exited" not in "".join(up.seen)  # it retried, never crashed
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(90) == 0
    finally:
        if up.proc.poll() is None:
            up.kill()


def test_a_killed_broker_is_started_again_and_new_input_is_processed(tmp_path: Path) -> None:
    """The embedded broker keeps topics in memory: when it dies, `up` says what is gone,
    starts it again empty, creates the topics and restarts the workers — and the users
    worker applies the new topics' events although their offsets start at 0 again (its
    stored positions name the old incarnation)."""
    port = free_port()
    env = {f"STREAMREC_{k.upper()}": str(v) for k, v in USERS_OVERRIDES.items()}
    up = UpProcess(tmp_path, port, "--workers", "users", **env)
    s = Settings(home=tmp_path, bootstrap_servers=f"127.0.0.1:{port}", **USERS_OVERRIDES)  # type: ignore[arg-type]
    dsn = EmbeddedPostgres(s.pg_data_dir).dsn()
    log = make_log(n_users=10, n_events=500, seed=23)
    first, second = log[:250], log[250:]
    try:
        up.wait_for("Ctrl-C")
        publish(s, first)
        n_first = len({e.event_id for e in first})
        wait_until(lambda: _event_count(dsn) == n_first, 120, 0.2, what="first half stored")
        broker = next(p for p in up.descendants() if "tansu" in p.name())
        broker.kill()
        gone = up.wait_for("exited with code", 60)
        assert "are gone" in gone and "lost" in gone
        back = up.wait_for("the embedded broker is back", 60)
        assert "starting the workers" in back
        up.wait_for("started worker users", 60)
        publish(s, second)  # to the new broker: offsets from 0 again
        distinct = len({e.event_id for e in log})
        wait_until(lambda: _event_count(dsn) == distinct, 180, 0.3, what="second half stored")
        assert_exact(dsn, log, s)
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(90) == 0
    finally:
        if up.proc.poll() is None:
            up.kill()
