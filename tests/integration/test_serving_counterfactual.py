"""`streamrec replay --policy NAME --engine serving`: logged requests re-run through the
real routed pipeline under another configuration, each user's state rebuilt from the
events logged before the request."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from jobs.replay import ReplayOptions, run_replay
from recsys.archive import read_archive
from recsys.counterfactual import PolicyConfig, register_policy_config
from recsys.records import RecRequest, RecResponse, Route, WarmthBucket
from recsys.serving.config import SHIPPED_ROUTES
from stack.embedded import EmbeddedBroker
from streams import admin
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from testkit.llm_server import SimulatedLlmServer
from tests.integration.serving_support import world
from tests.integration.serving_world import World, _scripted_events

__all__ = ["world"]

pytestmark = pytest.mark.integration

QUERY = "something funny about family mishaps"


def _log_traffic(world: World, settings: Settings) -> dict[str, str]:
    """The scripted users' events, then one request each (two with a query)."""
    events = _scripted_events(world.by_category)
    last = max(e.occurred_at for e in events)
    asks = {
        "warm": RecRequest(user_id=world.user("warm"), requested_at=last),
        "warming": RecRequest(user_id=world.user("warming"), requested_at=last),
        "cold": RecRequest(user_id=world.user("cold"), query=QUERY, requested_at=last),
        "new": RecRequest(user_id=world.user("new"), query=QUERY, requested_at=last),
    }
    with RecordProducer(settings) as producer:
        for event in events:
            producer.publish_user_event(event)
        for request in asks.values():
            producer.publish_request(request)
    return {name: r.request_id for name, r in asks.items()}


def _replayed(settings: Settings, policy: str) -> dict[str, RecResponse]:
    summary = run_replay(
        settings,
        ReplayOptions(topic="rec.requests", source="kafka", policy=policy, engine="serving"),
    )
    assert summary.written == 4
    root = settings.archive_root / "counterfactual" / policy
    out = [
        RecResponse.model_validate(m.value)
        for m in read_archive(root, Topics(settings).rec_responses.name)
    ]
    return {r.request_id: r for r in out}


@pytest.fixture
def logged(world: World, broker: EmbeddedBroker, tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    settings = world.settings.with_overrides(
        bootstrap_servers=broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        archive_dir=tmp_path / "archive",
    )
    admin.ensure_topics(settings)
    return settings, _log_traffic(world, settings)


def test_no_llm_counterfactual_through_the_serving_pipeline(
    logged: tuple[Settings, dict[str, str]], world: World, embedder: Any
) -> None:
    settings, ids = logged
    with SimulatedLlmServer() as server:
        llm = settings.with_overrides(llm_base_url=server.base_url, llm_model=server.model)
        production = _replayed(llm, "production")
        no_llm = _replayed(llm, "no-llm")
        calls = server.calls
    routes = {name: production[rid].route for name, rid in ids.items()}
    assert routes == {  # each bucket's shipped route (docs/routing.md); no history: content
        "warm": SHIPPED_ROUTES[WarmthBucket.WARM].route,
        "warming": SHIPPED_ROUTES[WarmthBucket.WARMING].route,
        "cold": SHIPPED_ROUTES[WarmthBucket.COLD].route,
        "new": Route.CONTENT,
    }
    assert production[ids["cold"]].llm_used and production[ids["new"]].llm_used
    assert calls > 0
    assert not any(r.llm_used for r in no_llm.values())
    assert {r.policy for r in no_llm.values()} == {"no-llm"}
    for name, rid in ids.items():
        shown = {i.item_id for i in no_llm[rid].items}
        assert shown and not shown & world.deleted
        assert not shown & world.clicked.get(world.user(name), set())


def test_other_warmth_thresholds_change_the_buckets(
    logged: tuple[Settings, dict[str, str]], world: World, embedder: Any
) -> None:
    settings, ids = logged
    register_policy_config(
        PolicyConfig("warm-from-10", "Warm from 10 positives.", {"warm_min_interactions": 10})
    )
    replayed = _replayed(settings, "warm-from-10")
    warming = replayed[ids["warming"]]
    warm_route = SHIPPED_ROUTES[WarmthBucket.WARM].route
    assert (warming.warmth_bucket, warming.route) == (WarmthBucket.WARM, warm_route)
