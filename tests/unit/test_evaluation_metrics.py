"""Metric functions against values computed by hand (the arithmetic is in the comments;
the expected numbers are written out, never produced by the code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.evaluation import (
    average_precision_at_k,
    catalog_coverage,
    effective_sample_size,
    hallucination_rate,
    hit_rate_at_k,
    intra_list_diversity,
    ips,
    llm_involvement_rate,
    mean_metric,
    ndcg_at_k,
    novelty,
    recall_at_k,
    reciprocal_rank,
    snips,
)
from recsys.evaluation.offpolicy import (
    LoggedDecision,
    LoggedPolicy,
    PolicyTarget,
    estimate,
    policy_targets,
)
from recsys.policy.model import Rule
from recsys.records import LlmInvolvement, LlmUseCase, RecResponse, Route, WarmthBucket
from recsys.serving.config import BucketRoute, ServingConfig
from recsys.serving.default_policy import default_policy

REC = ["a", "b", "c", "d", "e"]
REL = {"b", "d", "f"}  # hits at ranks 2 and 4; f is never recommended


def test_recall_and_hit_rate() -> None:
    assert recall_at_k(REC, REL, 5) == pytest.approx(2 / 3)  # b, d of {b, d, f}
    assert recall_at_k(REC, REL, 3) == pytest.approx(1 / 3)  # only b in a, b, c
    assert recall_at_k(REC, REL, 1) == 0.0
    assert hit_rate_at_k(REC, REL, 2) == 1.0
    assert hit_rate_at_k(REC, REL, 1) == 0.0


def test_ndcg_by_hand() -> None:
    # DCG@5 = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
    # IDCG@5 (3 relevant) = 1 + 0.630930 + 0.5 = 2.130930
    assert ndcg_at_k(REC, REL, 5) == pytest.approx(0.498190, abs=1e-6)
    # @3: DCG = 0.630930, IDCG = 2.130930
    assert ndcg_at_k(REC, REL, 3) == pytest.approx(0.296082, abs=1e-6)
    # one relevant item at rank 1: perfect
    assert ndcg_at_k(["x", "y"], {"x"}, 2) == pytest.approx(1.0)


def test_average_precision_and_map_by_hand() -> None:
    # AP@5 = (P@2 + P@4) / min(3, 5) = (1/2 + 2/4) / 3
    assert average_precision_at_k(REC, REL, 5) == pytest.approx(0.333333, abs=1e-6)
    # AP@3 = P@2 / 3 = 0.5 / 3
    assert average_precision_at_k(REC, REL, 3) == pytest.approx(0.166667, abs=1e-6)
    # MAP over (AP 1/3, AP 1.0); the list without relevant items is not judged
    pairs = [(REC, REL), (["x", "y"], {"x"}), (["q"], set())]
    assert mean_metric(lambda r, s: average_precision_at_k(r, s, 5), pairs) == pytest.approx(
        0.666667, abs=1e-6
    )


def test_reciprocal_rank_counts_a_repeated_item_once() -> None:
    assert reciprocal_rank(REC, REL) == 0.5
    assert reciprocal_rank(["b", "b", "a"], {"a"}) == 0.5  # b, a after de-duplication
    assert reciprocal_rank(["x"], {"a"}) == 0.0
    assert mean_metric(reciprocal_rank, [(REC, REL), (["a"], {"a"})]) == pytest.approx(0.75)


def test_undefined_without_relevant_items() -> None:
    with pytest.raises(ValueError, match="undefined"):
        recall_at_k(REC, set(), 5)
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(REC, REL, 0)
    assert mean_metric(reciprocal_rank, [(REC, set())]) is None


def test_coverage_diversity_novelty_by_hand() -> None:
    # top-2 of each list: {a, b} + {b, d} = 3 of 10 items
    assert catalog_coverage([["a", "b", "c"], ["b", "d"]], 10, 2) == pytest.approx(0.3)
    cats = {"a": ["x"], "b": ["x", "y"], "c": ["z"]}
    # d(a,b) = 1 - 1/2, d(a,c) = 1, d(b,c) = 1 → 2.5 / 3; the one-item list is skipped
    assert intra_list_diversity([["a", "b", "c"], ["a"]], 3, categories=cats) == pytest.approx(
        0.833333, abs=1e-6
    )
    vecs = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([1.0, 1.0])}
    # 1 - cos: (a,b) = 1, (a,c) = (b,c) = 1 - 1/sqrt(2) = 0.292893 → 1.585786 / 3
    assert intra_list_diversity([["a", "b", "c"]], 3, vectors=vecs) == pytest.approx(
        0.528595, abs=1e-6
    )
    # 16 users; a touched by 8 (1 bit), b by 2 (3 bits), c by nobody (counts as 1: 4 bits)
    # list 1: (1 + 3 + 4) / 3; list 2: 1 → mean 1.833333
    pop = {"a": 8, "b": 2}
    assert novelty([["a", "b", "c"], ["a"]], 3, pop, 16) == pytest.approx(1.833333, abs=1e-6)


def _resp(request_id: str, llm: bool) -> RecResponse:
    return RecResponse(
        request_id=request_id,
        user_id="u",
        items=[],
        route=Route.CF,
        warmth_bucket=WarmthBucket.WARM,
        propensity=1.0,
        llm_used=llm,
        latency_ms=1.0,
    )


def test_llm_involvement_and_hallucination_rate() -> None:
    assert llm_involvement_rate([_resp("1", True), _resp("2", False), _resp("3", False)]) == (
        pytest.approx(1 / 3)
    )

    def log(case: LlmUseCase, called: bool, bad: list[str]) -> LlmInvolvement:
        return LlmInvolvement(
            request_id="r",
            use_case=case,
            called=called,
            used=called,
            decision="called",
            hallucinated_ids=bad,
        )

    records = [
        log(LlmUseCase.RERANK, True, ["x"]),
        log(LlmUseCase.RERANK, True, []),
        log(LlmUseCase.EXPLAIN, True, ["y"]),
        log(LlmUseCase.RERANK, False, ["z"]),  # not a call (cache hit, skip): not judged
        log(LlmUseCase.ENRICH, True, ["w"]),  # enrichment returns no ids: not judged
    ]
    assert hallucination_rate(records) == pytest.approx(2 / 3)
    assert hallucination_rate([]) is None


def test_ips_and_snips_by_hand() -> None:
    rewards = [1.0, 0.0, 1.0, 1.0]
    logged_p = [0.5, 0.25, 1.0, 0.8]
    target_p = [1.0, 0.5, 0.0, 0.4]
    # w = [2, 2, 0, 0.5]; Σ w·r = 2 + 0 + 0 + 0.5 = 2.5; Σ w = 4.5
    assert ips(rewards, logged_p, target_p) == pytest.approx(0.625)  # 2.5 / 4
    assert snips(rewards, logged_p, target_p) == pytest.approx(0.555556, abs=1e-6)  # 2.5 / 4.5
    # clipped at 1.5: w = [1.5, 1.5, 0, 0.5]; Σ w·r = 2.0; Σ w = 3.5
    assert ips(rewards, logged_p, target_p, clip=1.5) == pytest.approx(0.5)
    assert snips(rewards, logged_p, target_p, clip=1.5) == pytest.approx(0.571429, abs=1e-6)
    # ESS = 4.5² / (4 + 4 + 0 + 0.25)
    assert effective_sample_size([2.0, 2.0, 0.0, 0.5]) == pytest.approx(2.454545, abs=1e-6)
    assert math.isnan(snips([1.0], [0.5], [0.0]))
    with pytest.raises(ValueError, match="propensity"):
        ips([1.0], [0.0], [1.0])


def _decision(
    warmth: str, query: bool, route: str, llm: bool, p: float, r: float, **logged: object
) -> LoggedDecision:
    return LoggedDecision("r", warmth, query, route, llm, p, r, **logged)  # type: ignore[arg-type]


def _logged(warmth: str, query: bool, route: str, rerank: bool, p: float) -> LoggedDecision:
    """A decision logged with its whole action (a user with history, the LLM available)."""
    return _decision(
        warmth,
        query,
        route,
        rerank,
        p,
        1.0,
        policy_version="v1",
        has_history=True,
        rerank_available=True,
        rerank=rerank,
        content_weight=1.0 if route == "HYBRID" else None,
        popularity_weight=0.5 if route == "HYBRID" else None,
    )


def test_policy_targets_give_the_probability_of_the_logged_action() -> None:
    # a settings' policy exploring 0.2 in every bucket, warm users on HYBRID(1, 0.5): a
    # warm user without a query has 4 routes x rerank or not = 8 actions, that one the rule
    policy = default_policy(ServingConfig(epsilon=0.2, warm=BucketRoute(Route.HYBRID)))
    targets = policy_targets(policy)
    router, no_llm = targets["router"], targets["router-no-llm"]
    assert router.probability(_logged("WARM", False, "HYBRID", False, 0.8)) == pytest.approx(0.8)
    assert router.probability(_logged("WARM", False, "CF", False, 1)) == pytest.approx(0.2 / 7)
    assert no_llm.probability(_logged("WARM", True, "HYBRID", False, 1)) == pytest.approx(0.8)
    assert no_llm.probability(_logged("WARM", True, "HYBRID", True, 1)) == pytest.approx(0.2 / 7)
    cf = targets["cf-only"]
    assert cf.probability(_logged("WARM", False, "CF", False, 1)) == pytest.approx(0.8)
    # another fusion arm is another action: the policy never takes it
    other = _decision(
        "WARM",
        False,
        "HYBRID",
        False,
        0.5,
        1.0,
        policy_version="v1",
        has_history=True,
        rerank_available=True,
        rerank=False,
        content_weight=3.0,
        popularity_weight=1.0,
    )
    assert router.probability(other) == 0.0
    # a record logged before the whole decision: rerank read as llm_used
    assert router.probability(_decision("WARM", False, "HYBRID", False, 1.0, 1)) == 0.8


def test_estimate_of_the_logging_policy_is_the_logged_mean() -> None:
    decisions = [
        _decision("COLD", True, "CONTENT", True, 0.5, 1.0),
        _decision("COLD", True, "CONTENT", False, 0.5, 0.0),
        _decision("WARM", False, "CF", False, 1.0, 1.0),
    ]
    logged = estimate(LoggedPolicy(), decisions)
    assert logged["snips"] == pytest.approx(2 / 3) and logged["ips"] == pytest.approx(2 / 3)
    # CF for everyone without the LLM (ε = 0): the cold users had no history (CONTENT, a
    # legacy record), so CF falls back to CONTENT without rerank: w = [0, 2, 1];
    # IPS = (0 + 0 + 1) / 3; SNIPS = 1 / (2 + 1)
    policy = default_policy(ServingConfig(epsilon=0.0))
    cf_no_llm = policy.with_rules(
        {c: Rule(Route.CF, False, r.fusion) for c, r in policy.rules.items()}
    )
    no_llm = estimate(PolicyTarget("cf-no-llm", cf_no_llm), decisions)
    assert no_llm["ips"] == pytest.approx(1 / 3)
    assert no_llm["snips"] == pytest.approx(1 / 3)
    assert no_llm["support"] == pytest.approx(2 / 3)
