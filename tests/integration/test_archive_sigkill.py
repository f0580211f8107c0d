"""The archive worker survives SIGKILL: run `streamrec worker archive` as a subprocess,
kill -9 it twice while records stream in and files roll, restart it, and check that
every produced record is in the archive exactly once — counted file by file, without
reader-side de-duplication — and that no file under a topic folder is ever partial
(unfinished files live under .inprogress/ and are removed on restart)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recsys.archive import list_files, read_avro_file
from recsys.archive.layout import INPROGRESS_DIR
from recsys.records import (
    FeedbackExample,
    LlmInvolvement,
    LlmUseCase,
    RecResponse,
    Route,
    WarmthBucket,
    utcnow,
)
from stack.supervisor import settings_env
from streams import admin
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from streams.wire import wire_bytes
from tests.helpers import read_topic, wait_until

REPO = Path(__file__).resolve().parents[2]
PER_TOPIC = 400


def _produce(settings: Settings, done: threading.Event) -> None:
    """~PER_TOPIC records per topic in small bursts over a few seconds."""
    topics = Topics(settings)
    with RecordProducer(settings) as producer:
        for i in range(PER_TOPIC):
            user = f"u{i % 7}"
            producer.send(
                topics.rec_responses,
                user,
                RecResponse(
                    request_id=f"r{i}",
                    user_id=user,
                    items=[],
                    route=Route.POPULARITY,
                    warmth_bucket=WarmthBucket.COLD,
                    propensity=1.0,
                    llm_used=False,
                    latency_ms=float(i),
                ),
            )
            producer.send(
                topics.llm_log,
                f"r{i}",
                LlmInvolvement(
                    request_id=f"r{i}",
                    use_case=LlmUseCase.RERANK,
                    called=False,
                    used=False,
                    decision="no_endpoint",
                    tokens_in=i,
                ),
            )
            producer.send(
                topics.feedback_examples,
                user,
                FeedbackExample(
                    example_id=f"r{i}:x",
                    request_id=f"r{i}",
                    user_id=user,
                    item_id="x",
                    rank=1,
                    route="POPULARITY",
                    warmth_bucket="COLD",
                    llm_used=False,
                    propensity=1.0,
                    impression_at=utcnow(),
                ),
            )
            if i % 20 == 19:
                producer.flush()
                time.sleep(0.1)
    done.set()


def _complete_files(root: Path, specs: list[str]) -> int:
    return sum(len(list_files(root, name)) for name in specs)


def _assert_no_partial_file(root: Path, names: list[str]) -> None:
    for name in names:
        for f in list_files(root, name):
            offsets = [m.offset for m in read_avro_file(f.path)]  # reads to the end
            assert offsets and (offsets[0], offsets[-1]) == (f.first_offset, f.last_offset)


@pytest.mark.slow
def test_archive_survives_sigkill_exactly_once(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.with_overrides(
        archive_dir=tmp_path / "archive",
        archive_roll_bytes=1024,
        archive_roll_s=0.3,
        archive_requests=False,
    )
    admin.ensure_topics(settings)
    topics = Topics(settings)
    names = [topics.rec_responses.name, topics.llm_log.name, topics.feedback_examples.name]
    root = settings.archive_root
    env = settings_env(settings)
    log = (tmp_path / "worker.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.app", "worker", "archive"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    done = threading.Event()
    producer = threading.Thread(target=_produce, args=(settings, done), daemon=True)
    proc = start()
    try:
        producer.start()
        for kill in (1, 2):
            seen = _complete_files(root, names)
            wait_until(
                lambda s=seen: _complete_files(root, names) >= s + 3,
                90,
                what=f"files rolling before kill {kill}",
            )
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            _assert_no_partial_file(root, names)
            proc = start()
        producer.join(120)
        assert done.is_set()

        def archived() -> int:
            return sum(
                1 for n in names for f in list_files(root, n) for _ in read_avro_file(f.path)
            )

        wait_until(lambda: archived() >= 3 * PER_TOPIC, 90, interval_s=0.5, what="all archived")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()

    _assert_no_partial_file(root, names)
    assert not list((root / INPROGRESS_DIR).rglob("*.part"))
    for name in names:
        originals = {
            (m.partition(), m.offset()): m.value() for m in read_topic(settings, name, PER_TOPIC)
        }
        assert len(originals) == PER_TOPIC
        copies = [
            ((m.partition, m.offset), wire_bytes(m))
            for f in list_files(root, name)
            for m in read_avro_file(f.path)
        ]
        assert len(copies) == PER_TOPIC, f"{name}: {len(copies)} archived, duplicates or loss"
        assert dict(copies) == originals
