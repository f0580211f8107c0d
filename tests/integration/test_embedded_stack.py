"""The embedded broker and Postgres: start, stop, reuse, clear errors, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from stack.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, port_is_free
from streams.exceptions import PortInUse
from tests.helpers import wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_busy_port_gives_a_clear_error(broker: EmbeddedBroker) -> None:
    with pytest.raises(
        PortInUse, match=rf"port {broker.port} .* already in use.*STREAMREC_BROKER_PORT"
    ):
        EmbeddedBroker(port=broker.port).start()


def test_postgres_restart_keeps_data(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pgdata")
    try:
        dsn = pg.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        pg.stop()
        assert not pg.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=1)
        assert pg.start() == dsn
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
    finally:
        pg.destroy()


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL the process that started broker and Postgres: both go away (PDEATHSIG)."""
    port = free_port()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from stack.embedded import EmbeddedBroker, EmbeddedPostgres
        b = EmbeddedBroker(port={port}); b.start()
        pg = EmbeddedPostgres(Path({str(tmp_path / "pg")!r})); pg.start()
        print(b.pid, pg._proc.pid, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    broker_pid, pg_pid = map(int, line.split())
    assert _alive(broker_pid) and _alive(pg_pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    wait_until(lambda: not _alive(broker_pid), 15, what="broker to exit")
    wait_until(lambda: not _alive(pg_pid), 30, what="postgres to exit")
    # and the port is free again
    wait_until(lambda: port_is_free("127.0.0.1", port), 15, what="the broker port to be free")
    again = EmbeddedBroker(port=port)
    again.start()
    again.stop()
