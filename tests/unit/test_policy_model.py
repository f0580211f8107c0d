"""The policy model: feasibility, exact probabilities in every context, documents, and
the settings' policy as the one serving used before policies were data."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from recsys.policy.model import (
    BUCKETS,
    CELLS,
    Action,
    Cell,
    Context,
    Fusion,
    Policy,
    Rule,
    contexts_of,
)
from recsys.policy.space import CandidateSpace, named_variants
from recsys.records import Route, WarmthBucket
from recsys.serving.config import ServingConfig
from recsys.serving.default_policy import default_policy

W, M, C = WarmthBucket.WARM, WarmthBucket.WARMING, WarmthBucket.COLD


def test_probabilities_are_a_distribution_in_every_context() -> None:
    policy = default_policy(ServingConfig(epsilon=0.1, epsilon_warm=0.4)).with_rules(
        {Cell(W, False): Rule(Route.CF, False, Fusion(1, 0.5))}
    )
    policy = Policy(policy.rules, policy.epsilon, (Fusion(0.5, 0.5), Fusion(3, 1)))
    for available in (True, False):
        for ctx in contexts_of(rerank_available=available):
            probs = policy.probabilities(ctx)
            assert sum(probs.values()) == pytest.approx(1.0)
            assert set(probs) == set(policy.actions(ctx))
            for action, p in probs.items():
                assert policy.probability(ctx, action) == p
            if not available or not (ctx.has_query or ctx.has_history):
                assert not any(a.rerank for a in probs)  # nothing to rerank with or by
            if not ctx.has_history:
                assert {a.route for a in probs} <= {Route.POPULARITY, Route.CONTENT}
    warm = Context(W, has_query=False, has_history=True)
    # routes: POPULARITY, CONTENT, CF, HYBRID x 3 fusion arms = 6, x rerank or not = 12
    assert len(policy.actions(warm)) == 12
    assert policy.probability(warm, Action(Route.CF, False)) == pytest.approx(0.6)
    assert policy.probability(warm, Action(Route.CF, True)) == pytest.approx(0.4 / 11)
    assert policy.probability(warm, Action(Route.HYBRID, False, Fusion(9, 9))) == 0.0


def test_drawn_actions_follow_the_probabilities_with_fusion_arms() -> None:
    policy = Policy(
        default_policy(ServingConfig()).rules, {b: 0.5 for b in BUCKETS}, (Fusion(0.5, 0.5),)
    )
    ctx = Context(M, has_query=True, has_history=True)
    rng = random.Random(11)
    n = 30_000
    seen: Counter[Action] = Counter()
    for _ in range(n):
        d = policy.decide(ctx, rng)
        assert d.propensity == policy.probability(ctx, d.action)
        assert d.explored == (d.action != policy.base(ctx))
        seen[d.action] += 1
    for action, p in policy.probabilities(ctx).items():
        assert seen[action] / n == pytest.approx(p, abs=0.01)


def test_epsilon_zero_is_deterministic_and_force_wins() -> None:
    policy = default_policy(ServingConfig(epsilon=0.0))
    ctx = Context(W, has_query=False, has_history=True)
    rng = random.Random(0)
    assert {policy.decide(ctx, rng).action for _ in range(200)} == {policy.base(ctx)}
    forced = policy.decide(ctx, rng, force=Route.CF)
    assert (forced.route, forced.propensity, forced.explored) == (Route.CF, 1.0, False)


def test_an_infeasible_rule_falls_back() -> None:
    policy = default_policy(ServingConfig()).with_rules(
        {Cell(C, True): Rule(Route.CF, True, Fusion(3, 1))}
    )
    no_history = Context(C, has_query=True, has_history=False)
    assert policy.base(no_history) == Action(Route.CONTENT, True)
    no_llm = Context(C, has_query=True, has_history=True, rerank_available=False)
    assert policy.base(no_llm) == Action(Route.CF, False)


def test_documents_round_trip_and_fingerprints_identify_definitions() -> None:
    policy = default_policy(ServingConfig(epsilon=0.05, epsilon_cold=0.2))
    policy = Policy(policy.rules, policy.epsilon, (Fusion(0.5, 0.25),), "v7")
    again = Policy.from_definition(policy.definition(), "v7")
    assert again == policy and again.fingerprint() == policy.fingerprint()
    assert again.epsilon[C] == 0.2 and again.epsilon[W] == 0.05
    other = policy.with_rules({Cell(W, False): Rule(Route.CONTENT, False, Fusion(1, 0.5))})
    assert other.fingerprint() != policy.fingerprint() and other.version == ""
    assert policy.version == "v7" and default_policy(ServingConfig()).version.startswith(
        "settings-"
    )
    with pytest.raises(ValueError, match="every cell"):
        Policy({CELLS[0]: policy.rules[CELLS[0]]}, policy.epsilon)
    with pytest.raises(ValueError, match="epsilon"):
        Policy(policy.rules, {**policy.epsilon, W: 1.5})
    with pytest.raises(ValueError, match="malformed"):
        Policy.from_definition({"cells": {}})
    with pytest.raises(ValueError, match="cell label"):
        Cell.parse("WARM")


def test_an_epsilon_override_sets_every_bucket() -> None:
    class S:
        cold_max_interactions, warm_min_interactions = 5, 51
        route_epsilon, route_epsilon_cold = 0.05, 0.3
        route_epsilon_warming = route_epsilon_warm = None
        serving_space, candidate_pool, rerank_cap = "enriched", 100, 30
        content_popularity_weight = 0.5
        llm_rerank = llm_intent = True
        llm_explain = False
        intent_hard_min_confidence = 0.7

    cfg = ServingConfig.from_settings(S())  # type: ignore[arg-type]
    assert (cfg.epsilon_of(C), cfg.epsilon_of(W)) == (0.3, 0.05)
    off = ServingConfig.from_settings(S(), epsilon=0.0)  # type: ignore[arg-type]
    assert {off.epsilon_of(b) for b in BUCKETS} == {0.0}


def test_candidate_space_and_variants() -> None:
    current = default_policy(ServingConfig())
    space = CandidateSpace(fusions=(Fusion(0.5, 0.5),))
    rules = space.rules(Cell(W, False), current.rules[Cell(W, False)])
    assert rules[0] == current.rules[Cell(W, False)]
    # 4 routes x 2 rerank, HYBRID with 2 arms: 10 distinct rules
    assert len(rules) == len(set(rules)) == 10
    only_warm = CandidateSpace(cells=(Cell(W, False),))
    assert only_warm.rules(Cell(C, True), current.rules[Cell(C, True)]) == [
        current.rules[Cell(C, True)]
    ]
    doc = space.as_json()
    assert CandidateSpace.from_document(doc) == space
    with pytest.raises(ValueError, match="unknown keys"):
        CandidateSpace.from_document({"route": ["CF"]})
    variants = named_variants(current)
    assert set(variants) == {
        "router",
        "router-no-llm",
        "router-llm-eligible",
        "cf-only",
        "content-only",
        "hybrid-only",
        "popularity-only",
    }
    assert not any(r.rerank for r in variants["router-no-llm"].rules.values())
    assert {r.route for r in variants["cf-only"].rules.values()} == {Route.CF}
