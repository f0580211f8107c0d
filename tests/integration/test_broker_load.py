"""`doctor` measures a running embedded broker's CPU share from the pid `up` noted."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stack import broker_load as bl
from stack.embedded import EmbeddedBroker, free_port
from streams.settings import Settings
from tests.integration.test_cli import streamrec

pytestmark = pytest.mark.integration


def _poll_fast(bootstrap: str, stop: threading.Event) -> None:
    """A consumer with a 5 ms fetch wait: it keeps the broker busy while idle."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "fetch.wait.max.ms": 5})
    consumer.assign([TopicPartition("busy", 0, 0)])
    while not stop.is_set():
        consumer.poll(0.05)
    consumer.close()


def test_doctor_reports_the_embedded_brokers_load(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    settings = Settings(home=tmp_path, broker_port=port)
    assert bl.broker_load(settings) is None, "no broker running: nothing to say"
    broker = EmbeddedBroker(port=port, run_dir=tmp_path / "run")
    broker.start()
    try:
        idle = bl.broker_load(settings, sample_s=1.0)
        assert idle is not None and idle.pid == broker.pid and idle.uptime_s < 60
        assert not idle.near_limit
        report = streamrec(
            "doctor",
            "--json",
            "--database",
            database,
            STREAMREC_HOME=str(tmp_path),
            STREAMREC_BROKER_PORT=str(port),
            STREAMREC_WORKERS="",
            STREAMREC_METRICS_PORT=str(free_port()),
        )
        assert report.returncode == 0, report.stderr
        caps = {c["name"]: c for c in json.loads(report.stdout)["capabilities"]}
        assert caps["embedded broker"]["status"] == "on"
        assert f"Tansu pid {broker.pid}" in caps["embedded broker"]["detail"]

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic("busy", 1, 1)])["busy"].result(10)
        stop = threading.Event()
        thread = threading.Thread(target=_poll_fast, args=(broker.bootstrap, stop), daemon=True)
        thread.start()
        try:
            # with the limit scaled down to what one fast poller costs, the same
            # measurement warns
            monkeypatch.setattr(bl, "LIMIT_CPU_SHARE", 0.005)
            loaded = bl.broker_load(settings, sample_s=1.0)
            assert loaded is not None and loaded.cpu_share > idle.cpu_share
            assert loaded.near_limit and "restart `streamrec up`" in loaded.describe()
        finally:
            stop.set()
            thread.join(5)
    finally:
        broker.stop()
    assert not bl.run_file(tmp_path / "run", port).exists()
    assert bl.broker_load(settings) is None
