"""The dashboard reads the logged topics only while someone looks at a page that shows them."""

from __future__ import annotations

import urllib.request

import pytest

from dashboard.server import Dashboard
from recsys.records import RecResponse, Route, WarmthBucket
from stack.embedded import free_port
from streams.admin import ensure_topics
from streams.producer import RecordProducer
from streams.settings import Settings
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def _respond(settings: Settings, request_id: str) -> None:
    with RecordProducer(settings) as producer:
        producer.send(
            producer.topics.rec_responses,
            "u1",
            RecResponse(
                request_id=request_id,
                user_id="u1",
                items=[],
                route=Route.POPULARITY,
                warmth_bucket=WarmthBucket.COLD,
                propensity=1.0,
                llm_used=False,
                latency_ms=1.0,
            ),
        )


def _serving_page(board: Dashboard) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{board.port}/serving", timeout=30) as page:
        return page.read().decode()


def test_the_tail_follows_while_pages_are_viewed_and_stops_when_idle(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings.with_overrides(dashboard_tail_idle_s=1.0)
    ensure_topics(settings)
    _respond(settings, "before-anyone-looked")
    board = Dashboard(settings, port=free_port()).start()
    try:
        assert not board.tail.following, "an unwatched dashboard reads nothing"
        _serving_page(board)
        assert board.tail.following
        # the backfill reads what was answered before the page was opened
        wait_until(lambda: "before-anyone-looked" in board.tail.responses, what="backfill")
        wait_until(lambda: not board.tail.following, timeout_s=15, what="the tail to stop")
        _respond(settings, "while-nobody-looked")
        _serving_page(board)
        assert board.tail.following
        wait_until(lambda: "while-nobody-looked" in board.tail.responses, what="a new read")
        recent = [r.request_id for r in board.tail.recent]
        assert recent.count("before-anyone-looked") == 1, "a restart does not repeat the list"
    finally:
        board.stop()
