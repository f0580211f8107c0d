"""Worker `users` as real processes (`streamrec worker users`): SIGKILL in the middle of
a stream with duplicates, restart, and every user's counts, buckets and sessions, the
read model, ``user_events`` and co-visitation equal the offline computation exactly;
two processes in one group split the partitions, and when one is killed the other
takes its partitions over and continues from the state committed in Postgres."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from recsys.records import UserEvent
from stack.supervisor import settings_env
from streams import admin
from streams.settings import Settings
from tests.helpers import wait_until
from tests.integration.users_harness import (
    USERS_OVERRIDES,
    assert_exact,
    caught_up,
    make_log,
    publish,
    stored_events,
    wait_caught_up,
)

REPO = Path(__file__).resolve().parents[2]


def _start(settings: Settings, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.app", "worker", "users"],
        cwd=REPO,
        env=settings_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return -9
    return proc.returncode


def _publish_slowly(settings: Settings, log: list[UserEvent], done: threading.Event) -> None:
    chunk = 100
    for i in range(0, len(log), chunk):
        publish(settings, log[i : i + chunk])
        time.sleep(0.25)
    done.set()


def _partitions_applied(path: Path) -> set[int]:
    return {int(p) for p in re.findall(r"now applying partition (\d+)", path.read_text())}


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_is_exact(settings: Settings, tmp_path: Path) -> None:
    s = settings.with_overrides(**USERS_OVERRIDES)
    admin.ensure_topics(s)
    log = make_log(n_users=40, n_events=2500, seed=11)
    assert s.database_url is not None
    dsn = s.database_url.get_secret_value()
    out = (tmp_path / "worker.log").open("ab")
    done = threading.Event()
    producer = threading.Thread(target=_publish_slowly, args=(s, log, done), daemon=True)
    proc = _start(s, out)
    try:
        producer.start()
        for kill, fraction in ((1, 0.2), (2, 0.55)):
            wait_until(
                lambda f=fraction: len(stored_events(dsn)) >= f * len(log),
                120,
                0.2,
                what=f"progress before kill {kill}",
            )
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert not caught_up(dsn, log, s)  # killed mid-stream
            proc = _start(s, out)
        producer.join(120)
        assert done.is_set()
        wait_caught_up(dsn, log, s, 180)
        assert _stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        out.close()
    assert_exact(dsn, log, s)


@pytest.mark.slow
def test_two_workers_split_partitions_and_one_takes_over(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.with_overrides(**USERS_OVERRIDES, user_partitions=4)
    admin.ensure_topics(s)
    log = make_log(n_users=60, n_events=2500, seed=5)
    assert s.database_url is not None
    dsn = s.database_url.get_secret_value()
    paths = [tmp_path / "a.log", tmp_path / "b.log"]
    outs = [p.open("ab") for p in paths]
    done = threading.Event()
    producer = threading.Thread(target=_publish_slowly, args=(s, log, done), daemon=True)
    procs = [_start(s, outs[0]), _start(s, outs[1])]
    try:
        producer.start()
        wait_until(
            lambda: all(_partitions_applied(p) for p in paths),
            120,
            0.5,
            what="both workers applying partitions",
        )
        a, b = (_partitions_applied(p) for p in paths)
        assert a.isdisjoint(b), (a, b)
        wait_until(
            lambda: len(stored_events(dsn)) >= 0.4 * len(log),
            120,
            0.2,
            what="progress before the kill",
        )
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(10)
        producer.join(120)
        assert done.is_set()
        wait_caught_up(dsn, log, s, 180)
        assert _partitions_applied(paths[1]) == {0, 1, 2, 3}  # took the others over
        assert _stop(procs[1]) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for o in outs:
            o.close()
    assert_exact(dsn, log, s)
