"""Routing, merge rules, diversity and evidence: the training-free parts of serving."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from recsys.items.model import ItemRecord
from recsys.policy.model import Action, Context, Fusion
from recsys.records import EvidenceKind, Route, WarmthBucket
from recsys.serving.candidates import Candidate, popularity_prior, profile_vector, rrf
from recsys.serving.config import SHIPPED_ROUTES, BucketRoute, ServingConfig, warmth_of
from recsys.serving.default_policy import default_policy
from recsys.serving.diversity import diversify, jaccard
from recsys.serving.explanations import Grounds, evidence_for, template_sentence

W, M, C = WarmthBucket.WARM, WarmthBucket.WARMING, WarmthBucket.COLD


def _base(
    warmth: WarmthBucket, history: bool, query: bool, cfg: ServingConfig | None = None
) -> Action:
    policy = default_policy(cfg or ServingConfig())
    return policy.base(Context(warmth, has_query=query, has_history=history))


@pytest.mark.parametrize(
    ("warmth", "history", "query", "route", "rerank"),
    [
        (W, True, False, SHIPPED_ROUTES[W].route, False),
        (W, True, True, Route.HYBRID, True),
        (M, True, False, SHIPPED_ROUTES[M].route, False),
        (C, True, False, SHIPPED_ROUTES[C].route, True),  # cold with history: LLM-eligible
        (C, True, True, Route.HYBRID, True),
        (C, False, True, Route.CONTENT, True),
        (C, False, False, Route.POPULARITY, False),  # nothing to rerank by
        (W, False, False, Route.POPULARITY, False),  # a stale bucket without items
    ],
)
def test_the_settings_policy_is_the_design_rule(
    warmth: WarmthBucket, history: bool, query: bool, route: Route, rerank: bool
) -> None:
    action = _base(warmth, history, query)
    assert (action.route, action.rerank) == (route, rerank)
    policy = default_policy(ServingConfig(epsilon=0.0))
    ctx = Context(warmth, has_query=query, has_history=history)
    d = policy.decide(ctx, random.Random(1))
    assert (d.action, d.propensity, d.explored) == (action, 1.0, False)


def test_hybrid_fusion_weights_follow_the_bucket() -> None:
    shipped = SHIPPED_ROUTES[C]
    cold = _base(C, True, True)  # a query: HYBRID, with the cold bucket's weights
    assert cold.fusion == Fusion(shipped.content_weight, shipped.popularity_weight)
    cfg = ServingConfig(
        cold=BucketRoute(Route.HYBRID, 2.0, 1.0), warming=BucketRoute(Route.HYBRID, 0.5, 0.5)
    )
    assert _base(C, True, True, cfg).fusion == Fusion(2.0, 1.0)
    assert _base(M, True, False, cfg).fusion == Fusion(0.5, 0.5)
    assert _base(W, True, True, cfg).fusion == Fusion(1.0, 0.5)  # warm: the shipped weights


def test_exploration_frequencies_match_the_logged_propensities() -> None:
    rng = random.Random(7)
    policy = default_policy(ServingConfig(epsilon=0.3))
    ctx = Context(W, has_query=False, has_history=True)
    seen: Counter[Action] = Counter()
    props: dict[Action, float] = {}
    n = 40_000
    for _ in range(n):
        d = policy.decide(ctx, rng)
        seen[d.action] += 1
        props[d.action] = d.propensity
    # 4 routes x rerank or not: 8 actions, the rule's 0.7, the 7 others 0.3 / 7 each
    assert set(seen) == set(policy.actions(ctx)) and len(seen) == 8
    assert props[policy.base(ctx)] == pytest.approx(0.7)
    assert sum(props.values()) == pytest.approx(1.0)
    for action, count in seen.items():
        assert count / n == pytest.approx(props[action], abs=0.01)


def test_forced_route_and_no_alternative() -> None:
    policy = default_policy(ServingConfig(epsilon=0.5))
    d = policy.decide(Context(C, has_query=False, has_history=False), random.Random(0))
    assert (d.route, d.propensity) == (Route.POPULARITY, 1.0)  # nothing else is feasible
    ctx = Context(W, has_query=False, has_history=True)
    d = policy.decide(ctx, random.Random(0), force=Route.CONTENT)
    assert (d.route, d.propensity) == (Route.CONTENT, 1.0)


def test_warmth_thresholds() -> None:
    cfg = ServingConfig(cold_max=5, warm_min=51)
    assert [warmth_of(p, cfg) for p in (0, 5, 6, 50, 51)] == [C, C, M, M, W]
    assert warmth_of(6, ServingConfig(cold_max=10, warm_min=20)) is C


def test_rrf_rewards_agreement_and_keeps_the_best_source() -> None:
    cf = [Candidate("a", 9, "als"), Candidate("b", 8, "als"), Candidate("c", 7, "covisit", "x")]
    content = [Candidate("c", 0.9, "content"), Candidate("d", 0.8, "content")]
    fused = rrf(cf, content)
    assert [c.item_id for c in fused] == ["c", "a", "b", "d"]  # b, d tie: by id
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert fused[0].source == "content"  # rank 1 there beats rank 3 in CF


def test_popularity_prior_is_log_scaled_to_one() -> None:
    prior = popularity_prior([("a", 100.0), ("b", 9.0), ("c", 0.0)])
    assert prior["a"] == 1.0
    assert prior["b"] == pytest.approx(np.log1p(9) / np.log1p(100))
    assert prior["c"] == 0.0
    assert popularity_prior([]) == {}


def test_profile_vector_weights_newest_items_most() -> None:
    vectors = {"new": np.array([1.0, 0.0]), "old": np.array([0.0, 1.0])}
    v = profile_vector(["new", "old"], vectors, half_life=1.0)
    assert v is not None and v[0] > v[1] > 0
    assert np.linalg.norm(v) == pytest.approx(1.0)
    assert profile_vector(["missing"], vectors) is None


def _plain_mmr(ranked, cats, k, lam):  # type: ignore[no-untyped-def]
    top, low = max(c.score for c in ranked), min(c.score for c in ranked)
    rel = {c.item_id: (c.score - low) / ((top - low) or 1) for c in ranked}
    picked: list[Candidate] = []
    rest = list(ranked)
    while rest and len(picked) < k:

        def value(c):  # type: ignore[no-untyped-def]
            pen = max((jaccard(cats[c.item_id], cats[p.item_id]) for p in picked), default=0)
            return (1 - lam) * rel[c.item_id] - lam * pen

        best = max(rest, key=lambda c: (value(c), -ranked.index(c)))
        picked.append(best)
        rest.remove(best)
    return picked


def test_lazy_mmr_equals_plain_greedy_mmr() -> None:
    rng = random.Random(3)
    genres = ["a", "b", "c", "d", "e"]
    for _ in range(30):
        ranked = [Candidate(f"i{i}", rng.random(), "popularity") for i in range(40)]
        ranked.sort(key=lambda c: -c.score)
        cats = {c.item_id: frozenset(rng.sample(genres, rng.randint(1, 2))) for c in ranked}
        assert diversify(ranked, cats, 10, 0.4) == _plain_mmr(ranked, cats, 10, 0.4)


def test_diversity_spreads_categories() -> None:
    ranked = [Candidate(f"h{i}", 10 - i * 0.01, "popularity") for i in range(5)]
    ranked += [Candidate("x", 9.0, "popularity")]
    cats = {c.item_id: frozenset({"horror"}) for c in ranked} | {"x": frozenset({"comedy"})}
    assert [c.item_id for c in diversify(ranked, cats, 3, 0.0)] == ["h0", "h1", "h2"]
    assert "x" in [c.item_id for c in diversify(ranked, cats, 3, 0.5)]


def _item(item_id: str, title: str, cats: tuple[str, ...], year: str | None = None) -> ItemRecord:
    attrs = {"year": year} if year else {}
    return ItemRecord(item_id, 1, "c", "h", title=title, categories=cats, attributes=attrs)


def test_evidence_names_only_facts_that_hold() -> None:
    details = {
        "r1": _item("r1", "Alien", ("Sci-Fi", "Horror")),
        "r2": _item("r2", "Heat", ("Crime",)),
        "x": _item("x", "Aliens", ("Sci-Fi", "Action"), "1986"),
        "y": _item("y", "Toy Story", ("Animation",)),
    }
    vectors = {"r1": np.array([1.0, 0.0]), "x": np.array([0.9, 0.1]), "y": np.array([0.0, 1.0])}
    grounds = Grounds(recent=["r1", "r2"], details=details, vectors=vectors)
    ev = evidence_for(Candidate("x", 1.0, "content"), grounds)
    kinds = [e.kind for e in ev]
    assert kinds == [EvidenceKind.SIMILAR_TO_RECENT, EvidenceKind.MATCHED_CATEGORY]
    assert ev[0].ref_item_id == "r1" and ev[1].value == "Sci-Fi"
    assert template_sentence(ev) == "Similar to Alien, which you recently enjoyed."
    # nothing shared, nothing similar: only popularity may be claimed
    ev = evidence_for(Candidate("y", 1.0, "popularity"), grounds)
    assert [e.kind for e in ev] == [EvidenceKind.POPULAR]
    # co-visitation names the item it goes with; query constraints are claimed when met
    q = Grounds(recent=[], details=details, vectors={}, query_categories=["sci-fi"])
    ev = evidence_for(Candidate("x", 1.0, "covisit", via="r2"), q)
    assert ev[0].kind is EvidenceKind.CO_VISITED and ev[0].value == "Heat"
    assert ev[1].kind is EvidenceKind.QUERY_CONSTRAINT and ev[1].value == "Sci-Fi"


def test_weighted_rrf_scales_each_list_and_checks_the_weights() -> None:
    cf = [Candidate("a", 9, "als"), Candidate("b", 8, "als")]
    content = [Candidate("b", 0.9, "content"), Candidate("c", 0.8, "content")]
    fused = rrf(cf, content, weights=(1.0, 0.5))
    assert [c.item_id for c in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 0.5 / 61)
    assert [c.item_id for c in rrf(cf, content, weights=(1.0, 0.0))][:2] == ["a", "b"]
    with pytest.raises(ValueError, match="weights"):
        rrf(cf, content, weights=(1.0,))


@pytest.mark.parametrize(
    ("warmth", "query", "routes", "route"),
    [
        (W, False, {"warm": Route.HYBRID}, Route.HYBRID),
        (C, False, {"cold": Route.CONTENT}, Route.CONTENT),
        (C, True, {"cold": Route.CF}, Route.HYBRID),  # a query brings content in
        (C, True, {"cold": Route.CONTENT}, Route.CONTENT),
        (M, False, {"warming": Route.CONTENT}, Route.CONTENT),
        (M, True, {"warming": Route.CF}, Route.HYBRID),
        (W, True, {"warm": Route.CF}, Route.HYBRID),
    ],
)
def test_the_routes_per_bucket_are_configurable(
    warmth: WarmthBucket, query: bool, routes: dict[str, Route], route: Route
) -> None:
    cfg = ServingConfig(**{b: BucketRoute(r) for b, r in routes.items()})  # type: ignore[arg-type]
    assert _base(warmth, True, query, cfg).route is route
    assert _base(warmth, False, False, cfg).route is Route.POPULARITY
