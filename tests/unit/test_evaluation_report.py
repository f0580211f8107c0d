"""The sliced report on a tiny fixture whose numbers are worked out by hand, and the
HTML it renders (self-contained: inline PNGs, no external assets)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from recsys.evaluation import EvaluationData, evaluate, render_html
from recsys.records import (
    EventType,
    FeedbackExample,
    LlmInvolvement,
    LlmUseCase,
    RecommendedItem,
    RecRequest,
    RecResponse,
    Route,
    UserEvent,
    WarmthBucket,
)
from recsys.serving.config import SHIPPED_ROUTES

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _resp(
    rid: str,
    user: str,
    items: list[str],
    route: Route,
    warmth: WarmthBucket,
    llm: bool,
    p: float,
    latency: float,
    policy: str = "production",
) -> RecResponse:
    return RecResponse(
        request_id=rid,
        user_id=user,
        route=route,
        warmth_bucket=warmth,
        propensity=p,
        llm_used=llm,
        latency_ms=latency,
        produced_at=T0,
        policy=policy,
        items=[
            RecommendedItem(item_id=i, rank=n, score=1.0, source="t")
            for n, i in enumerate(items, 1)
        ],
    )


def _event(user: str, kind: EventType, item: str, minutes: float, eid: str) -> UserEvent:
    return UserEvent(
        event_id=eid,
        user_id=user,
        event_type=kind,
        item_id=item,
        rating=4.5 if kind is EventType.RATING else None,
        occurred_at=T0 + timedelta(minutes=minutes),
    )


def _example(rid: str, user: str, item: str, clicked: bool) -> FeedbackExample:
    return FeedbackExample(
        example_id=f"{rid}:{item}",
        request_id=rid,
        user_id=user,
        item_id=item,
        rank=1,
        route="CF",
        warmth_bucket="WARM",
        llm_used=False,
        propensity=1.0,
        clicked=clicked,
        impression_at=T0,
    )


@pytest.fixture
def data() -> EvaluationData:
    r1 = _resp("r1", "u1", ["a", "b"], Route.CF, WarmthBucket.WARM, False, 1.0, 10.0)
    r2 = _resp("r2", "u2", ["c", "d"], Route.CONTENT, WarmthBucket.COLD, True, 0.5, 30.0)
    events = [
        _event("u1", EventType.CLICK, "b", 5, "e1"),  # r1: {b}
        _event("u1", EventType.CLICK, "b", 6, "e1"),  # duplicate event id: ignored
        _event("u1", EventType.VIEW, "a", 5, "e2"),  # a view is not a positive
        _event("u2", EventType.PURCHASE, "c", 1, "e3"),  # r2: {c, z}
        _event("u2", EventType.RATING, "z", 2, "e4"),
        _event("u2", EventType.CLICK, "d", 90, "e5"),  # after the 30-minute window
        _event("u2", EventType.CLICK, "d", -5, "e6"),  # before the impression
    ]
    examples = [
        _example("r1", "u1", "a", False),
        _example("r1", "u1", "b", True),
        _example("r1", "u1", "b", True),  # re-emitted: same example_id, counted once
        _example("r2", "u2", "c", False),
        _example("r2", "u2", "d", False),
    ]
    log = [
        LlmInvolvement(
            request_id="r2",
            use_case=LlmUseCase.RERANK,
            called=True,
            used=True,
            decision="called",
            cost_usd=0.002,
            hallucinated_ids=["q"],
        ),
        LlmInvolvement(
            request_id="r2",
            use_case=LlmUseCase.EXPLAIN,
            called=True,
            used=True,
            decision="called",
            cost_usd=0.001,
        ),
    ]
    cf = [
        _resp(
            "r1", "u1", ["b", "x"], Route.POPULARITY, WarmthBucket.WARM, False, 1.0, 1.0, "no-llm"
        ),
        _resp(
            "r2", "u2", ["z", "c"], Route.POPULARITY, WarmthBucket.COLD, False, 1.0, 1.0, "no-llm"
        ),
    ]
    return EvaluationData(
        responses=[r1, r2, r1],  # r1 logged twice (at-least-once): counted once
        examples=examples,
        llm_log=log,
        requests={"r2": RecRequest(request_id="r2", user_id="u2", query="a funny film")},
        events=events,
        counterfactual={"no-llm": cf},
    )


def test_sliced_metrics_by_hand(data: EvaluationData) -> None:
    report = evaluate(data, k=2, window_s=1800, targets=["logged", "router-no-llm"])
    assert report["relevance_source"] == "user.events"
    prod = report["systems"]["production"]
    overall = prod["overall"]
    assert overall["n"] == 2 and overall["n_judged"] == 2
    # r1: [a, b] vs {b} → recall 1, NDCG 1/log2(3) = 0.630930, AP 1/2, RR 1/2
    # r2: [c, d] vs {c, z} → recall 1/2, NDCG 1/(1 + 0.630930) = 0.613147, AP 1/2, RR 1
    assert overall["recall@2"] == pytest.approx(0.75)
    assert overall["ndcg@2"] == pytest.approx((0.630930 + 0.613147) / 2, abs=1e-6)
    assert overall["map@2"] == pytest.approx(0.5)
    assert overall["mrr"] == pytest.approx(0.75)
    assert overall["hit_rate@2"] == 1.0
    assert overall["llm_involvement_rate"] == 0.5
    assert overall["cost_usd_total"] == pytest.approx(0.003)
    assert overall["cost_usd_mean"] == pytest.approx(0.0015)
    assert overall["hallucination_rate"] == pytest.approx(0.5)  # 1 of 2 calls
    assert overall["latency_ms_p50"] == pytest.approx(20.0)
    # catalog = items seen anywhere: a b c d (events, responses) z x (cf) = 6; top-2 shows 4
    assert overall["coverage"] == pytest.approx(4 / 6)
    assert prod["by_llm_used"]["true"]["recall@2"] == pytest.approx(0.5)
    assert prod["by_llm_used"]["false"]["recall@2"] == pytest.approx(1.0)
    assert prod["by_route"]["CONTENT"]["cost_usd_total"] == pytest.approx(0.003)
    assert prod["by_route"]["CF"]["cost_usd_total"] == 0.0
    assert set(prod["by_warmth_bucket"]) == {"COLD", "WARM"}
    # the counterfactual, judged by the same events: r1 [b, x] → 1; r2 [z, c] → 1
    cf = report["systems"]["no-llm"]["overall"]
    assert cf["recall@2"] == pytest.approx(1.0) and cf["llm_involvement_rate"] == 0.0
    assert cf["cost_usd_mean"] is None  # no LLM log of its own


def test_off_policy_section(data: EvaluationData) -> None:
    report = evaluate(data, k=2, targets=["logged", "router-no-llm", "cf-only"])
    ope = report["off_policy"]
    # rewards from examples: r1 had a click (1), r2 none (0)
    assert ope["n_logged"] == 2 and ope["logged_mean_reward"] == pytest.approx(0.5)
    assert ope["estimates"]["logged"]["snips"] == pytest.approx(0.5)
    # router-no-llm (the settings' policy, CF for a warm user, no LLM): r1 (WARM, CF, no
    # rerank, p 1) agrees → w 1, reward 1; r2 was the LLM → 0: IPS = 1 / 2, SNIPS = 1 / 1
    assert SHIPPED_ROUTES[WarmthBucket.WARM].route is Route.CF
    assert ope["estimates"]["router-no-llm"]["ips"] == pytest.approx(0.5)
    assert ope["estimates"]["router-no-llm"]["snips"] == pytest.approx(1.0)
    # cf-only: r1 (WARM, CF, no rerank, p 1) → w 1, reward 1; r2 (cold without history:
    # CF falls back to CONTENT, with the LLM as the policy reranks queries; p 0.5) → w 2,
    # reward 0: IPS = (1 + 0) / 2, SNIPS = 1 / (1 + 2)
    assert ope["estimates"]["cf-only"]["ips"] == pytest.approx(0.5)
    assert ope["estimates"]["cf-only"]["snips"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="unknown target policy"):
        evaluate(data, targets=["nope"])


def test_falls_back_to_feedback_examples_without_events(data: EvaluationData) -> None:
    data.events = None
    report = evaluate(data, k=2, targets=["logged"])
    assert report["relevance_source"] == "feedback.examples"
    production = report["systems"]["production"]
    overall = production["overall"]
    assert overall["n_judged"] == 1  # only r1 had a successful shown item (b)
    # only shown items can be relevant: recall@2 and hit rate@2 are 1 by construction,
    # so they are left out (with the reason), in every slice; the position metrics stay
    assert set(production["omitted"]) == {"recall@2", "hit_rate@2"}
    for metrics in [overall, *production["by_route"].values()]:
        assert "recall@2" not in metrics and "hit_rate@2" not in metrics
        assert "recall@2" not in metrics["ci"]
    assert overall["ndcg@2"] == pytest.approx(0.630930, abs=1e-6)  # b shown second
    assert "only shown items can be relevant" in production["relevance"]
    # the counterfactual's recall can vary (it may miss what production showed), but it
    # is credited only where it agrees with production: said so
    cf = report["systems"]["no-llm"]
    assert cf["omitted"] == {} and cf["overall"]["recall@2"] == pytest.approx(1.0)
    assert "credited only where it agrees with production" in cf["relevance"]
    # neither the page nor the terminal shows a constant column
    page = render_html(report)
    production_html = page[page.index("<h2>production</h2>") : page.index("<h2>no-llm</h2>")]
    assert "<th>recall@2</th>" not in production_html
    assert "Left out: recall@2" in production_html
    assert "<th>recall@2</th>" in page[page.index("<h2>no-llm</h2>") :]


def test_events_relevance_keeps_every_metric_and_says_what_relevant_means(
    data: EvaluationData,
) -> None:
    report = evaluate(data, k=2, targets=["logged"])
    for system in report["systems"].values():
        assert system["omitted"] == {}
        assert system["relevance"].startswith("relevant = the items the user")
        assert "shown or not" in system["relevance"]


def test_intervals_on_the_plotted_metrics(data: EvaluationData) -> None:
    report = evaluate(data, k=2, targets=["logged", "router-no-llm"])
    overall = report["systems"]["production"]["overall"]
    ci = overall["ci"]
    # two judged requests: recall 1 and 1/2 → resampled means lie in [0.5, 1]
    low, high = ci["recall@2"]
    assert 0.5 <= low <= overall["recall@2"] <= high <= 1.0
    assert ci["latency_ms_p50"][0] <= overall["latency_ms_p50"] <= ci["latency_ms_p50"][1]
    assert ci["llm_involvement_rate"] == [0.0, 1.0]  # one of two: anything from 0 to 1
    # a slice of one request has no interval
    assert report["systems"]["production"]["by_route"]["CF"]["ci"]["ndcg@2"] is None
    logged = report["off_policy"]["estimates"]["logged"]
    assert logged["snips_ci"][0] <= logged["snips"] <= logged["snips_ci"][1]


def test_html_report_is_self_contained(data: EvaluationData) -> None:
    data.categories = {"a": ["x"], "b": ["y"], "c": ["x"], "d": ["x"], "z": ["y"], "x": ["y"]}
    report = evaluate(data, k=2, targets=["logged", "router-no-llm"])
    assert report["systems"]["production"]["overall"]["ild"] == pytest.approx(0.5)  # 1 and 0
    page = render_html(report)
    assert page.count("data:image/png;base64,") >= 4
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "<script" not in text and "http" not in text  # no external assets
    assert "router-no-llm" in page and "no-llm" in page


def test_shed_requests_are_set_apart_not_judged_as_empty_lists(data: EvaluationData) -> None:
    from recsys.records import RecRequest as Req
    from recsys.serving.shedding import expired_response

    before = evaluate(data, k=2, targets=["logged"])
    shed = expired_response(Req(request_id="r3", user_id="u1"), late_s=4.0, latency_ms=0.1)
    # an EXPIRED duplicate of an answered request (a redelivery served late) is no shed
    late_repeat = expired_response(Req(request_id="r1", user_id="u1"), late_s=9.0, latency_ms=0.1)
    cf_r3 = _resp(
        "r3", "u1", ["b", "a"], Route.POPULARITY, WarmthBucket.WARM, False, 1.0, 1.0, "no-llm"
    )
    with_shed = EvaluationData(
        responses=[*data.responses, shed, late_repeat, shed],
        examples=data.examples,
        llm_log=data.llm_log,
        requests=data.requests,
        events=data.events,
        counterfactual={"no-llm": [*data.counterfactual["no-llm"], cf_r3]},
    )
    assert [r.request_id for r in with_shed.expired] == ["r3"]
    assert {r.request_id for r in with_shed.responses} == {"r1", "r2"}
    # the counterfactual is judged on the requests production answered, too
    assert {r.request_id for r in with_shed.counterfactual["no-llm"]} == {"r1", "r2"}
    report = evaluate(with_shed, k=2, targets=["logged"])
    assert report["expired_requests"] == 1 and before["expired_requests"] == 0
    for name in ("production", "no-llm"):
        assert report["systems"][name]["overall"] == before["systems"][name]["overall"]
    assert report["off_policy"]["n_logged"] == before["off_policy"]["n_logged"]
    assert "1 requests were answered EXPIRED" in render_html(report)
