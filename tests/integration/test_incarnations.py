"""A second run of the embedded stack on the same home: the broker starts empty (memory
storage), so offsets begin at 0 again, while Postgres and the archive remember the first
run's positions. Everything published to the new broker must still be applied by the
users worker and archived by the archive worker, and the change of incarnation is said
at WARNING."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from recsys.archive import read_archive
from recsys.archive.incarnations import load_incarnations
from recsys.records import RecRequest, UserEvent
from stack.embedded import EmbeddedBroker, free_port
from streams import admin
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from tests.conftest import make_settings
from tests.helpers import await_until
from tests.integration.users_harness import (
    USERS_OVERRIDES,
    assert_exact,
    caught_up,
    make_log,
    publish,
)
from workers.archive_worker import ArchiveWorker
from workers.bootstrap import bootstrap
from workers.runtime import serve_forever
from workers.users_worker import UsersWorker


@pytest.fixture
def port() -> int:
    return free_port()


def _second_log() -> list[UserEvent]:
    """Another log of the same users a day later, with ids of its own (a resent event
    stays the same object, so it stays a duplicate)."""
    renamed: dict[str, UserEvent] = {}
    out = []
    for e in make_log(n_users=8, n_events=240, seed=21):
        if e.event_id not in renamed:
            renamed[e.event_id] = e.model_copy(
                update={
                    "event_id": f"second-{e.event_id}",
                    "occurred_at": e.occurred_at + timedelta(days=1),
                }
            )
        out.append(renamed[e.event_id])
    return out


def _requests(run: str, n: int) -> list[RecRequest]:
    return [RecRequest(request_id=f"{run}-{i}", user_id=f"u{i % 8}") for i in range(n)]


async def _run_workers(s: Settings, log: list[UserEvent], request_ids: set[str]) -> None:
    """Run users + archive until every event is applied and every request archived."""
    assert s.database_url is not None
    dsn = s.database_url.get_secret_value()
    topic = Topics(s).rec_requests.name
    ctx = bootstrap(s)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(serve_forever(w, ctx, stop)) for w in ("users", "archive")]

    def archived() -> bool:
        got = {m.value["request_id"] for m in read_archive(s.archive_root, topic)}
        return request_ids <= got

    try:
        await await_until(
            lambda: any(t.done() for t in tasks) or (caught_up(dsn, log, s) and archived()),
            90,
            0.3,
            what="events applied and requests archived",
        )
        assert not any(t.done() for t in tasks)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        await ctx.aclose()
    assert ctx.handles.require(UsersWorker).updater.stats.applied > 0
    assert ctx.handles.require(ArchiveWorker).writer.stats.written > 0


def _publish_all(s: Settings, log: list[UserEvent], requests: list[RecRequest]) -> None:
    admin.ensure_topics(s)
    publish(s, log)
    spec = Topics(s).rec_requests
    with RecordProducer(s) as producer:
        for r in requests:
            producer.send(spec, r.user_id, r)


async def test_a_restarted_embedded_broker_loses_nothing_new(
    tmp_path: Path, database: str, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    s = make_settings(
        tmp_path,
        database_url=database,
        bootstrap_servers=f"127.0.0.1:{port}",
        archive_dir=tmp_path / "archive",
        archive_requests=True,
        archive_roll_s=0.3,
        **USERS_OVERRIDES,
    )
    first_log, second_log = make_log(n_users=8, n_events=240, seed=20), _second_log()
    first_requests, second_requests = _requests("first", 30), _requests("second", 30)

    with EmbeddedBroker(port=port):
        _publish_all(s, first_log, first_requests)
        await _run_workers(s, first_log, {r.request_id for r in first_requests})
    assert_exact(database, first_log, s)

    caplog.set_level(logging.WARNING)
    with EmbeddedBroker(port=port):  # `streamrec up` again: same Postgres, same archive
        _publish_all(s, second_log, second_requests)
        await _run_workers(s, first_log + second_log, {r.request_id for r in second_requests})
    assert_exact(database, first_log + second_log, s)  # nothing dropped, nothing doubled

    topic = Topics(s).rec_requests.name
    archived = [m.value["request_id"] for m in read_archive(s.archive_root, topic)]
    assert archived == [r.request_id for r in first_requests + second_requests] or sorted(
        archived
    ) == sorted(r.request_id for r in first_requests + second_requests)
    assert len(archived) == len(set(archived)) == 60
    epochs = load_incarnations(s.archive_root, topic)
    assert [i.epoch for i in epochs] == [0, 1] and epochs[0].topic_id != epochs[1].topic_id
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("users: user.events is a new incarnation" in w for w in warnings), warnings
    assert any(f"archive: {topic} is a new incarnation" in w for w in warnings), warnings
