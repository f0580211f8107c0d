"""The `streamrec` CLI end to end, as a user runs it (subprocesses, real stack)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from stack.embedded import EmbeddedBroker, free_port
from streams.settings import Settings
from testkit.up_process import UpProcess

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env.update(extra)
    return env


def streamrec(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.app", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=_env(**env),
    )


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def test_busy_broker_port_is_a_clear_error(broker: EmbeddedBroker, tmp_path: Path) -> None:
    result = streamrec("up", "--broker-port", str(broker.port), STREAMREC_HOME=str(tmp_path))
    assert result.returncode == 2
    assert f"port {broker.port} on 127.0.0.1 is already in use" in result.stderr
    _no_traceback(result)


def test_bad_broker_address_is_a_clear_error_and_stops_postgres(tmp_path: Path) -> None:
    result = streamrec(
        "up", "--broker", "127.0.0.1:1", STREAMREC_HOME=str(tmp_path), STREAMREC_ADMIN_TIMEOUT_S="2"
    )
    assert result.returncode == 2, result.stderr
    assert "no Kafka broker answered at 127.0.0.1:1" in result.stderr
    _no_traceback(result)
    # the embedded Postgres it started on the way is stopped again
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    result = streamrec("migrate", "--database", f"postgresql://postgres@/x?host={tmp_path}&port=1")
    assert result.returncode == 2
    assert "cannot connect to Postgres" in result.stderr
    _no_traceback(result)


def test_unknown_setting_is_a_clear_error() -> None:
    result = streamrec("doctor", STREAMREC_LLM_MODLE="x")
    assert result.returncode == 2
    assert "did you mean STREAMREC_LLM_MODEL?" in result.stderr
    _no_traceback(result)


def test_migrate_and_topics_commands(broker: EmbeddedBroker, database: str) -> None:
    # the template already holds every migration: nothing to apply, all recorded
    result = streamrec("migrate", "--database", database)
    assert result.returncode == 0, result.stderr
    assert "0 applied now" in result.stdout
    prefix = f"cli{time.time_ns()}."
    result = streamrec(
        "topics",
        "create",
        "--broker",
        broker.bootstrap,
        STREAMREC_TOPIC_PREFIX=prefix,
        STREAMREC_USER_PARTITIONS="3",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("created") == 14
    result = streamrec(
        "topics",
        "list",
        "--broker",
        broker.bootstrap,
        STREAMREC_TOPIC_PREFIX=prefix,
        STREAMREC_USER_PARTITIONS="3",
    )
    assert result.returncode == 0, result.stderr
    assert f"{prefix}rec.requests" in result.stdout and "3/3" in result.stdout


def test_doctor_reports_each_capability_and_why(broker: EmbeddedBroker, database: str) -> None:
    result = streamrec(
        "doctor",
        "--json",
        "--broker",
        broker.bootstrap,
        "--database",
        database,
        STREAMREC_LLM_API_KEY="sk-secret-value",
        STREAMREC_WORKERS="",  # configuration only: no worker is expected to run
        STREAMREC_METRICS_PORT=str(free_port()),
    )
    assert result.returncode == 0, result.stderr
    assert "sk-secret-value" not in result.stdout
    report = json.loads(result.stdout)
    caps = {c["name"]: c for c in report["capabilities"]}
    assert caps["broker"]["status"] == "on"
    assert caps["database"]["status"] == "on" and "PostgreSQL 18" in caps["database"]["detail"]
    assert caps["pgvector"]["detail"].startswith("pgvector 0.8.")
    assert caps["embedding model"]["status"] == "on"
    assert (
        caps["LLM endpoint"]["status"] == "off"
        and "STREAMREC_LLM_BASE_URL is unset" in caps["LLM endpoint"]["detail"]
    )
    assert (
        caps["tracing"]["status"] == "off"
        and "STREAMREC_OTEL_ENDPOINT" in caps["tracing"]["detail"]
    )
    assert report["settings"]["llm_api_key"] == "***"
    assert report["workers"] == []
    # the workers a deployment runs are checked: none answers here, so doctor says so
    idle = streamrec(
        "doctor",
        "--json",
        "--broker",
        broker.bootstrap,
        "--database",
        database,
        STREAMREC_WORKERS="serve",
        STREAMREC_METRICS_PORT=str(free_port()),
    )
    assert idle.returncode == 1
    (serve,) = json.loads(idle.stdout)["workers"]
    assert serve["name"] == "serve" and serve["state"] == "down" and "no answer" in serve["detail"]
    down = streamrec("doctor", "--json", "--broker", "127.0.0.1:1", "--database", database)
    assert down.returncode == 1
    caps = {c["name"]: c for c in json.loads(down.stdout)["capabilities"]}
    assert caps["broker"]["status"] == "error" and "127.0.0.1:1" in caps["broker"]["detail"]


@pytest.mark.slow
def test_up_runs_in_the_foreground_stops_cleanly_and_reuses_postgres(tmp_path: Path) -> None:
    port = free_port()
    up = UpProcess(tmp_path, port)
    up.wait_for("topics")
    line = (
        up.wait_for("migration(s) applied now")
        if not any("migration" in s for s in up.seen)
        else next(s for s in up.seen if "migration" in s)
    )
    assert "0 migration" not in line  # first start applies them
    up.wait_for("Ctrl-C")
    children = up.descendants()
    names = {c.name() for c in children}
    assert any("tansu" in n for n in names) and "postgres" in names
    pids = [c.pid for c in children]
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(60) == 0
    _gone, alive = psutil.wait_procs(
        [psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=20
    )
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], (
        "orphan processes left behind"
    )

    again = UpProcess(tmp_path, port)
    line = again.wait_for("migration(s) applied now")
    assert "0 migration(s) applied now" in line  # the data directory was reused
    again.wait_for("Ctrl-C")
    again.proc.send_signal(signal.SIGINT)
    assert again.proc.wait(60) == 0
    assert Settings(home=tmp_path).pg_data_dir.joinpath("PG_VERSION").exists()
