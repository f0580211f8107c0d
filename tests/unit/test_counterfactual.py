"""The counterfactual machinery with the popularity stand-in engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from recsys.counterfactual import POLICY_CONFIGS, build_policy, replay_requests
from recsys.exceptions import ConfigurationError
from recsys.records import EventType, RecRequest, RecResponse, Route, UserEvent, WarmthBucket

T0 = datetime(2026, 1, 10, tzinfo=UTC)


def ev(
    user: str, kind: EventType, item: str, minute: int, rating: float | None = None
) -> UserEvent:
    return UserEvent(
        user_id=user,
        event_type=kind,
        item_id=item,
        rating=rating,
        occurred_at=T0 + timedelta(minutes=minute),
    )


def req(
    rid: str, user: str, minute: int, k: int = 2, exclude: list[str] | None = None
) -> RecRequest:
    return RecRequest(
        request_id=rid,
        user_id=user,
        k=k,
        exclude_item_ids=exclude or [],
        requested_at=T0 + timedelta(minutes=minute),
    )


EVENTS = [
    ev("u1", EventType.CLICK, "a", 1),
    ev("u2", EventType.PURCHASE, "a", 2),
    ev("u2", EventType.CLICK, "b", 3),
    ev("u3", EventType.VIEW, "c", 4),  # a view: consumed by u3, not a positive
    ev("u1", EventType.RATING, "c", 5, rating=2.0),  # a low rating: not a positive
    ev("u3", EventType.CLICK, "d", 20),  # after r1 and r2
    ev("u3", EventType.CLICK, "d", 21),
    ev("u4", EventType.CLICK, "d", 22),
]


def test_popularity_sees_only_the_past_and_skips_consumed_and_excluded() -> None:
    policy = build_policy("no-llm")
    requests = [req("r2", "u3", 10, exclude=["b"]), req("r1", "u1", 10), req("r3", "u5", 30, k=3)]
    logged = {
        "r1": RecResponse(
            request_id="r1",
            user_id="u1",
            items=[],
            route=Route.CF,
            warmth_bucket=WarmthBucket.WARM,
            propensity=1.0,
            llm_used=True,
            latency_ms=5.0,
            produced_at=T0 + timedelta(minutes=10, seconds=1),
        ),
    }
    answers = {r.request_id: resp for r, resp in replay_requests(policy, requests, EVENTS, logged)}
    # at minute 10: a has 2 positives, b 1; d is in the future
    assert [i.item_id for i in answers["r1"].items] == ["b"]  # u1 consumed a (and c)
    assert [i.item_id for i in answers["r2"].items] == ["a"]  # u3 excluded b, consumed c
    # at minute 30: d 3, a 2, b 1
    assert [i.item_id for i in answers["r3"].items] == ["d", "a", "b"]
    assert [i.score for i in answers["r3"].items] == [3.0, 2.0, 1.0]
    for resp in answers.values():
        assert resp.policy == "no-llm" and not resp.llm_used and resp.route is Route.POPULARITY
        assert resp.propensity == 1.0
    assert answers["r1"].produced_at == logged["r1"].produced_at  # judged at the logged time
    assert answers["r3"].produced_at == T0 + timedelta(minutes=30)


def test_warmth_thresholds_come_from_the_configuration() -> None:
    history = [ev("u1", EventType.CLICK, f"i{n}", n) for n in range(3)]
    [(_, default)] = replay_requests(build_policy("no-llm"), [req("r", "u1", 60)], history)
    [(_, strict)] = replay_requests(build_policy("warmth-strict"), [req("r", "u1", 60)], history)
    assert default.warmth_bucket is WarmthBucket.COLD  # 3 positives ≤ 5
    assert strict.warmth_bucket is WarmthBucket.WARMING  # 2 < 3 < 20


def test_unknown_configuration_or_engine_is_a_clear_error() -> None:
    assert {"no-llm", "rerank-cap-20", "raw-embeddings", "warmth-strict"} <= set(POLICY_CONFIGS)
    with pytest.raises(ConfigurationError, match="unknown policy configuration 'nope'"):
        build_policy("nope")
    with pytest.raises(ConfigurationError, match="unknown policy engine 'no-such-engine'"):
        build_policy("no-llm", engine="no-such-engine")
