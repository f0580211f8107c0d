"""Choosing a route per request, with an explicit propensity.

The base rule: a user with history and no query takes their warmth bucket's route
(:class:`~recsys.serving.config.BucketRoute`: CF, CONTENT, HYBRID or POPULARITY, with
its fusion weights); the shipped routes — CF for warm and warming users, the
equal-weight HYBRID for cold ones — are what :mod:`recsys.evaluation.route_selection`
chose on a MovieLens validation split (docs/routing.md). With a query → HYBRID (the
query's content list with their CF list; CONTENT for a cold user whose route is
CONTENT); no history → CONTENT around the query, or POPULARITY without one. With
probability ``epsilon`` another feasible route is explored, chosen uniformly; the
propensity of the route taken is logged so that off-policy estimators (IPS/SNIPS) can
evaluate other routings from the logs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from recsys.records import Route, WarmthBucket

__all__ = ["RouteDecision", "choose_route", "feasible_routes"]


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    propensity: float
    base: Route
    explored: bool


def feasible_routes(has_history: bool, has_query: bool) -> list[Route]:
    """Routes that can produce candidates for this request, in a fixed order."""
    routes = [Route.POPULARITY]
    if has_history or has_query:
        routes.append(Route.CONTENT)
    if has_history:
        routes += [Route.CF, Route.HYBRID]
    return routes


def base_route(
    warmth: WarmthBucket,
    has_history: bool,
    has_query: bool,
    *,
    cold: Route = Route.HYBRID,
    warming: Route = Route.HYBRID,
    warm: Route = Route.HYBRID,
) -> Route:
    """The route the rule picks without exploration (``cold``/``warming``/``warm``: the
    routes of a cold user with history, a warming and a warm user, without a query)."""
    if not has_history:
        return Route.CONTENT if has_query else Route.POPULARITY
    if warmth is WarmthBucket.WARM:
        return Route.HYBRID if has_query else warm
    if warmth is WarmthBucket.WARMING:
        return Route.HYBRID if has_query else warming
    return Route.HYBRID if has_query and cold is not Route.CONTENT else cold


def choose_route(
    warmth: WarmthBucket,
    *,
    has_history: bool,
    has_query: bool,
    epsilon: float,
    rng: random.Random,
    force: Route | None = None,
    cold: Route = Route.HYBRID,
    warming: Route = Route.HYBRID,
    warm: Route = Route.HYBRID,
) -> RouteDecision:
    """Route for one request and the probability this policy had of taking it."""
    if force is not None:
        return RouteDecision(force, 1.0, force, False)
    base = base_route(warmth, has_history, has_query, cold=cold, warming=warming, warm=warm)
    options = feasible_routes(has_history, has_query)
    others = [r for r in options if r is not base]
    if epsilon <= 0 or not others:
        return RouteDecision(base, 1.0, base, False)
    if rng.random() < epsilon:
        route = rng.choice(others)
        return RouteDecision(route, epsilon / len(others), base, True)
    return RouteDecision(base, 1.0 - epsilon, base, False)
