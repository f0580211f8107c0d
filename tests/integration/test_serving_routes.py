"""Serving on the real Postgres + pgvector world: each user state takes its route,
nothing ineligible is ever served, a confident LLM reading of a query becomes SQL
filters and a keyword reading only orders the list."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from recsys.cf.als import item_sum
from recsys.cf.interactions import Interaction, build_matrix
from recsys.records import Route, WarmthBucket
from recsys.serving.config import SHIPPED_ROUTES, BucketRoute
from recsys.serving.pg_ports import PgCf
from tests.integration.serving_support import ask, serving, world
from tests.integration.serving_world import World

__all__ = ["world"]  # the module fixture

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("name", "query", "configured", "route", "bucket"),
    [
        ("warm", None, None, SHIPPED_ROUTES[WarmthBucket.WARM].route, WarmthBucket.WARM),
        ("warm", "a tense thriller", None, Route.HYBRID, WarmthBucket.WARM),
        ("warm", "a tense thriller", Route.CF, Route.HYBRID, WarmthBucket.WARM),
        ("warming", None, None, SHIPPED_ROUTES[WarmthBucket.WARMING].route, WarmthBucket.WARMING),
        ("cold", None, None, SHIPPED_ROUTES[WarmthBucket.COLD].route, WarmthBucket.COLD),
        ("cold", None, Route.CF, Route.CF, WarmthBucket.COLD),
        ("new", None, None, Route.POPULARITY, WarmthBucket.COLD),
        ("new", "something funny about family mishaps", None, Route.CONTENT, WarmthBucket.COLD),
    ],
)
async def test_each_user_state_takes_its_route(
    world: World,
    embedder: Any,
    name: str,
    query: str | None,
    configured: Route | None,
    route: Route,
    bucket: WarmthBucket,
) -> None:
    """Users with history take their bucket's route (the shipped one unless configured
    otherwise) — HYBRID with a query; without history, popularity or the query's content."""
    policy = {} if configured is None else {bucket.value.lower(): BucketRoute(configured)}
    async with serving(world, embedder, **policy) as rec:
        served = await ask(rec, world.user(name), query=query, k=10)
    r = served.response
    assert (r.route, r.warmth_bucket, r.propensity) == (route, bucket, 1.0)
    assert len(r.items) == 10
    assert [i.rank for i in r.items] == list(range(1, 11))
    assert len({i.item_id for i in r.items}) == 10
    assert all(i.item_id in world.items for i in r.items)
    assert all(i.explanation and i.evidence for i in r.items)
    assert not r.llm_used  # no endpoint configured
    # one rerank decision per request is logged, with the route and propensity
    rerank = [x for x in served.logs if x.use_case.value == "RERANK"]
    assert len(rerank) == 1 and not rerank[0].called and rerank[0].route == route.value
    if route in (Route.CF, Route.HYBRID):
        assert r.model_version is not None  # the ALS version that produced it


async def test_cf_route_serves_the_offline_fold_in_of_the_users_training_row(
    world: World, embedder: Any
) -> None:
    """Known answer: the trained model's exact top 10 for the user's row of the training
    matrix (what ``quality_cf``'s offline ALS scores) — not the recent visits with
    positional weights the route once folded in from."""
    user = world.user("warm")
    matrix = build_matrix(
        Interaction(e.user_id, e.item_id, e.event_type.value, e.rating, e.occurred_at.timestamp())
        for e in world.events
        if e.item_id is not None
    )
    async with serving(world, embedder, warm=BucketRoute(Route.CF)) as rec:
        served = await ask(rec, user, k=10)
        view = await rec.users.view(user)
        assert isinstance(rec.cf, PgCf)
        model = await rec.cf.als_store.load(active_version(world))
    assert view.cf_profile is not None
    assert sorted(view.cf_profile) == sorted(matrix.user_row(user))
    items = served.response.items
    assert {i.source for i in items} == {"als"}
    expected = model.recommend(matrix.user_row(user), 50, world.clicked[user] | world.deleted)
    assert [i.item_id for i in items] == [i for i, _ in expected][:10]
    assert served.response.model_version == active_version(world)


async def test_cf_route_by_the_latent_item_sum(world: World, embedder: Any) -> None:
    """Known answer: a cold user's CF list by ``cf_fold="item_sum"`` is the exact top 10
    of the inner product with the sum of their items' factors (confidence-weighted)."""
    user = world.user("cold")
    matrix = build_matrix(
        Interaction(e.user_id, e.item_id, e.event_type.value, e.rating, e.occurred_at.timestamp())
        for e in world.events
        if e.item_id is not None
    )
    route = BucketRoute(Route.CF, cf_fold="item_sum")
    async with serving(world, embedder, cold=route) as rec:
        served = await ask(rec, user, k=10)
        assert isinstance(rec.cf, PgCf)
        model = await rec.cf.als_store.load(active_version(world))
    row = matrix.user_row(user)
    vector = item_sum(
        model.item_factors[[model.item_index[i] for i, _ in row]],
        np.array([w for _, w in row]),
        model.params.alpha,
    )
    scores = model.item_factors @ vector
    skip = {i for i, _ in row} | world.clicked[user] | world.deleted
    exact = [model.item_ids[j] for j in np.argsort(-scores) if model.item_ids[j] not in skip]
    assert served.response.route is Route.CF
    assert [i.item_id for i in served.response.items] == exact[:10]


async def test_cf_route_by_co_visitation_shares(world: World, embedder: Any) -> None:
    """Known answer: with ``cf_fold="covisit"`` a cold user's CF list is the co-visitation
    neighbours of their 5 newest profile items, each seed's pairs (read here straight from
    ``covisit_pair``) as shares of its own weight, summed, best first; no ALS involved."""
    import psycopg

    user = world.user("cold")
    route = BucketRoute(Route.CF, cf_fold="covisit")
    async with serving(world, embedder, cold=route) as rec:
        served = await ask(rec, user, k=10)
        view = await rec.users.view(user)
    assert view.cf_profile is not None
    seeds = list(dict.fromkeys(i for i, _ in view.cf_profile))[:5]
    with psycopg.connect(world.dsn) as conn:
        rows = conn.execute(
            "SELECT item_a, item_b, log2_weight FROM covisit_pair "
            "WHERE item_a = ANY(%(s)s) OR item_b = ANY(%(s)s)",
            {"s": seeds},
        ).fetchall()
    pairs: dict[str, list[tuple[str, float]]] = {}
    for a, b, w in rows:
        if a in seeds:
            pairs.setdefault(a, []).append((b, w))
        if b in seeds:
            pairs.setdefault(b, []).append((a, w))
    assert pairs and all(len(p) < 100 for p in pairs.values())  # every pair read per seed
    score: Counter[str] = Counter()
    for own in pairs.values():
        top = max(w for _, w in own)
        total = sum(2.0 ** (w - top) for _, w in own)
        for other, w in own:
            score[other] += 2.0 ** (w - top) / total
    skip = set(seeds) | set(view.consumed) | set(view.recent_items) | world.deleted
    expected = sorted((i for i in score if i not in skip), key=lambda i: (-score[i], i))
    r = served.response
    got = [i.item_id for i in r.items if i.source == "covisit"]
    assert r.route is Route.CF and r.model_version is None
    assert got and got == expected[: len(got)]
    assert len(got) == min(10, len(expected))  # the rest of the 10 from the popular head


def active_version(world: World) -> str:
    import psycopg

    with psycopg.connect(world.dsn) as conn:
        row = conn.execute("SELECT version FROM als_models WHERE active").fetchone()
    assert row is not None
    return str(row[0])


async def test_cold_content_route_follows_recent_items(world: World, embedder: Any) -> None:
    async with serving(world, embedder, cold=BucketRoute(Route.CONTENT)) as rec:
        served = await ask(rec, world.user("cold"), k=10)
    assert served.response.route is Route.CONTENT
    scifi = set(world.by_category["sci-fi"])
    assert sum(i.item_id in scifi for i in served.response.items) >= 5


async def test_cold_hybrid_weighs_the_content_list_over_cf(world: World, embedder: Any) -> None:
    """Known answers from the fusion's arithmetic, not a re-run of the recommender's code.

    Reciprocal-rank fusion scores an item ``w / (60 + rank)`` per list. With the cold
    bucket's weights (CF 1, content 3), a content item at rank r beats the best item that
    only CF ranks while ``3 / (60 + r) > 1 / 61``, i.e. for r < 123: the top 10 are all
    content picks. With equal weights the lists interleave and CF picks appear. The cold
    user's history is sci-fi, so the content picks are mostly sci-fi.
    """
    scifi = set(world.by_category["sci-fi"])
    async with serving(world, embedder, cold=BucketRoute(Route.HYBRID, 3.0, 1.0)) as rec:
        weighted = (await ask(rec, world.user("cold"), k=10)).response
    async with serving(world, embedder, cold=BucketRoute(Route.HYBRID, 1.0, 1.0)) as rec:
        even = (await ask(rec, world.user("cold"), k=10)).response
    assert (weighted.route, weighted.warmth_bucket) == (Route.HYBRID, WarmthBucket.COLD)
    assert {i.source for i in weighted.items} == {"content"}
    assert Counter(i.source for i in even.items)["als"] >= 1
    assert sum(i.item_id in scifi for i in weighted.items) >= 7


async def test_never_deleted_consumed_or_excluded_on_any_route(world: World, embedder: Any) -> None:
    routes: Counter[Route] = Counter()
    async with serving(world, embedder, epsilon=0.6) as rec:
        for name in ("warm", "warming", "cold", "new"):
            user = world.user(name)
            excluded = sorted(world.by_category["comedy"])[5:9]
            for n in range(12):
                query = "a funny comedy" if n % 3 == 0 else None
                served = await ask(rec, user, query=query, exclude_item_ids=excluded, k=20)
                r = served.response
                routes[r.route] += 1
                shown = {i.item_id for i in r.items}
                assert not shown & world.deleted
                assert not shown & world.clicked.get(user, set())
                assert not shown & set(excluded)
                assert 0 < r.propensity <= 1.0
    assert set(routes) == set(Route)  # exploration visited every route


QUERY = "a comedy from the 1990s, no horror"


def _fits(world: World, item_id: str) -> int:
    """How many parts of QUERY an item meets (comedy, the 90s), -10 if it is horror."""
    change = world.items[item_id]
    if "horror" in change.categories:
        return -10
    return ("comedy" in change.categories) + (1990 <= int(change.attributes["year"]) <= 1999)


async def test_a_rules_reading_orders_the_list_and_filters_nothing(
    world: World, embedder: Any
) -> None:
    async with serving(world, embedder) as rec:  # no LLM: the rules read the query
        served = await ask(rec, world.user("new"), query=QUERY, k=40)
    items = served.response.items
    assert len(items) == 40 and served.response.eligible_count is None
    fits = [_fits(world, i.item_id) for i in items]
    assert fits == sorted(fits, reverse=True)  # best matches first, horror (if any) last
    assert fits[0] == 2 and min(fits) < 2  # others are still served after them
    assert any(e.kind.value == "QUERY_CONSTRAINT" for e in items[0].evidence)


async def test_a_confident_llm_reading_becomes_sql_filters(
    world: World, embedder: Any, llm_server: Any
) -> None:
    async with serving(world, embedder, llm_url=llm_server.base_url) as rec:
        served = await ask(rec, world.user("new"), query=QUERY, k=8)
    intent = [x for x in served.logs if x.use_case.value == "INTENT"]
    assert intent and intent[0].used  # the simulated model's reading, confidence 0.9
    r = served.response
    assert len(r.items) == 8
    soft = [any(e.kind.value == "OTHER" for e in i.evidence) for i in r.items]
    passed = [i for i, s in zip(r.items, soft, strict=True) if not s]
    assert passed and all(_fits(world, i.item_id) == 2 for i in passed)
    assert all(e.kind.value == "QUERY_CONSTRAINT" for i in passed for e in i.evidence[:1])
    if any(soft):  # fewer 90s comedies than asked for: counted, said, then soft matches
        assert soft == sorted(soft)  # the items that pass come first
        assert r.eligible_count == len(passed)
        assert r.short_reason and "hard constraints (comedy; 1990-1999; not horror)" in (
            r.short_reason
        )
        # a soft match may miss the wanted parts, never the exclusion
        assert all(0 <= _fits(world, i.item_id) < 2 for i in r.items[len(passed) :])
    # the same reading below the confidence threshold only orders the list
    async with serving(
        world, embedder, llm_url=llm_server.base_url, intent_hard_min_confidence=0.95
    ) as rec:
        unsure = await ask(rec, world.user("new"), query=QUERY, k=40)
    fits = [_fits(world, i.item_id) for i in unsure.response.items]
    assert len(fits) == 40 and fits == sorted(fits, reverse=True) and min(fits) < 2


async def test_raw_space_and_other_thresholds_change_the_policy(
    world: World, embedder: Any
) -> None:
    policy = {"warm_min": 70, "space": "raw", "name": "cf-70"}
    content_led = BucketRoute(Route.CONTENT)  # warming users: a route the warm ones lack
    async with serving(world, embedder, warming=content_led, **policy) as rec:
        served = await ask(rec, world.user("warm"), k=5)
    r = served.response
    assert (r.warmth_bucket, r.route, r.policy) == (WarmthBucket.WARMING, Route.CONTENT, "cf-70")
