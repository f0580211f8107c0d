"""A serving policy: what it decides per request, and the exact probability of each choice.

A request's *context* is its warmth bucket, whether it carries a query, whether the user
has any history, and whether an LLM reranker is available. The policy has one *rule* per
*cell* (bucket and query or not — six cells): the route, the fusion weights the HYBRID
route uses, and whether the LLM reranks. The *action* taken for a request is the whole
decision — route, fusion weights (HYBRID only) and the rerank decision — so that an
off-policy estimator can judge any other rule from the logs.

Feasibility: a user without history cannot be served by CF or HYBRID (no history and no
query leaves POPULARITY only), and the LLM reranks only when it is available and has a
query or a history to go on. A rule whose route is infeasible falls back to CONTENT
(with a query) or POPULARITY.

Exploration: with probability ``ε`` (per bucket) the policy takes another feasible
action, chosen uniformly — other routes, other rerank decisions, and for HYBRID the
policy's declared extra fusion arms (``explore_fusions``). So with ``m`` feasible
actions the rule's action has probability ``1 - ε`` and each other one ``ε / (m - 1)``
(``1`` when ``m = 1``): :meth:`Policy.probabilities` is exact, and it is what serving
logs as the propensity.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from recsys.records import Route, WarmthBucket

__all__ = [
    "BUCKETS",
    "CELLS",
    "Action",
    "Cell",
    "Context",
    "Decision",
    "Fusion",
    "Policy",
    "Rule",
    "contexts_of",
    "feasible_routes",
]

BUCKETS = (WarmthBucket.COLD, WarmthBucket.WARMING, WarmthBucket.WARM)
_ROUND = 6


@dataclass(frozen=True, order=True)
class Cell:
    """A warmth bucket with or without a query: the unit a policy has one rule for."""

    bucket: WarmthBucket
    query: bool

    @property
    def label(self) -> str:
        """``COLD/query`` or ``WARM/no-query``."""
        return f"{self.bucket.value}/{'query' if self.query else 'no-query'}"

    @classmethod
    def parse(cls, label: str) -> Cell:
        """The cell named by :attr:`label`."""
        bucket, _, q = label.partition("/")
        if q not in ("query", "no-query"):
            raise ValueError(f"not a cell label: {label!r} (e.g. WARM/no-query)")
        return cls(WarmthBucket(bucket), q == "query")


CELLS = tuple(Cell(b, q) for b in BUCKETS for q in (False, True))


def feasible_routes(has_history: bool, has_query: bool) -> list[Route]:
    """Routes that can produce candidates for a request, in a fixed order."""
    routes = [Route.POPULARITY]
    if has_history or has_query:
        routes.append(Route.CONTENT)
    if has_history:
        routes += [Route.CF, Route.HYBRID]
    return routes


@dataclass(frozen=True)
class Fusion:
    """Weights of the HYBRID route: the content list against the CF list (weight 1) in
    reciprocal-rank fusion, and the popularity prior blended into the content scores."""

    content_weight: float
    popularity_weight: float

    def __post_init__(self) -> None:
        if self.content_weight < 0 or self.popularity_weight < 0:
            raise ValueError("fusion weights must not be negative")
        object.__setattr__(self, "content_weight", round(float(self.content_weight), _ROUND))
        object.__setattr__(self, "popularity_weight", round(float(self.popularity_weight), _ROUND))

    @property
    def label(self) -> str:
        return f"c{self.content_weight:g},p{self.popularity_weight:g}"


@dataclass(frozen=True)
class Action:
    """What serving did for a request: route, HYBRID's fusion weights, rerank decision."""

    route: Route
    rerank: bool
    fusion: Fusion | None = None

    def __post_init__(self) -> None:
        if (self.route is Route.HYBRID) != (self.fusion is not None):
            raise ValueError("an action has fusion weights exactly when its route is HYBRID")

    @property
    def label(self) -> str:
        """``HYBRID(c1,p0.5)+rerank``, ``CF``, ``CONTENT+rerank``."""
        route = self.route.value + (f"({self.fusion.label})" if self.fusion else "")
        return route + ("+rerank" if self.rerank else "")


@dataclass(frozen=True)
class Rule:
    """A cell's rule: its route, the fusion weights HYBRID uses there, rerank or not."""

    route: Route
    rerank: bool
    fusion: Fusion

    @property
    def label(self) -> str:
        route = self.route.value + (f"({self.fusion.label})" if self.route is Route.HYBRID else "")
        return route + ("+rerank" if self.rerank else "")


@dataclass(frozen=True)
class Context:
    """What the policy conditions on (all of it is logged with the decision)."""

    bucket: WarmthBucket
    has_query: bool
    has_history: bool
    rerank_available: bool = True

    @property
    def cell(self) -> Cell:
        return Cell(self.bucket, self.has_query)

    @property
    def can_rerank(self) -> bool:
        """An LLM is there, and it has a query or a history to rerank by."""
        return self.rerank_available and (self.has_query or self.has_history)


@dataclass(frozen=True)
class Decision:
    """The action taken for a request, with its exact probability under the policy."""

    action: Action
    propensity: float
    base: Action
    explored: bool
    policy_version: str

    @property
    def route(self) -> Route:
        return self.action.route


@dataclass(frozen=True)
class Policy:
    """Rules per cell, exploration per bucket, extra fusion arms to explore; a version.

    Build one with :meth:`from_definition` (a stored or hand-written JSON document),
    or :func:`recsys.policy.defaults.default_policy` (the settings' policy).
    """

    rules: Mapping[Cell, Rule]
    epsilon: Mapping[WarmthBucket, float]
    explore_fusions: tuple[Fusion, ...] = ()
    version: str = ""
    _cache: dict[Context, tuple[Action, tuple[Action, ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        missing = [c.label for c in CELLS if c not in self.rules]
        if missing:
            raise ValueError(f"a policy needs a rule for every cell; missing {missing}")
        for bucket in BUCKETS:
            eps = self.epsilon.get(bucket)
            if eps is None or not 0.0 <= eps <= 1.0:
                raise ValueError(f"epsilon of {bucket.value} must be in [0, 1], got {eps}")
        object.__setattr__(self, "rules", dict(self.rules))
        object.__setattr__(self, "epsilon", dict(self.epsilon))
        object.__setattr__(self, "explore_fusions", tuple(dict.fromkeys(self.explore_fusions)))

    # ---- decisions --------------------------------------------------------------------
    def fusions(self, cell: Cell) -> tuple[Fusion, ...]:
        """HYBRID fusion arms of a cell: the rule's own, then the declared extra ones."""
        return tuple(dict.fromkeys([self.rules[cell].fusion, *self.explore_fusions]))

    def _plan(self, ctx: Context) -> tuple[Action, tuple[Action, ...]]:
        cached = self._cache.get(ctx)
        if cached is not None:
            return cached
        rule = self.rules[ctx.cell]
        routes = feasible_routes(ctx.has_history, ctx.has_query)
        reranks = (False, True) if ctx.can_rerank else (False,)
        actions = tuple(
            Action(route, rerank, fusion if route is Route.HYBRID else None)
            for route in routes
            for fusion in (self.fusions(ctx.cell) if route is Route.HYBRID else (None,))
            for rerank in reranks
        )
        if rule.route in routes:
            route = rule.route
        else:
            route = Route.CONTENT if ctx.has_query else Route.POPULARITY
        base = Action(
            route, rule.rerank and ctx.can_rerank, rule.fusion if route is Route.HYBRID else None
        )
        plan = (base, actions)
        self._cache[ctx] = plan
        return plan

    def base(self, ctx: Context) -> Action:
        """The rule's action for ``ctx`` (after feasibility fallbacks)."""
        return self._plan(ctx)[0]

    def actions(self, ctx: Context) -> tuple[Action, ...]:
        """Every action the policy may take in ``ctx``, in a fixed order."""
        return self._plan(ctx)[1]

    def probabilities(self, ctx: Context) -> dict[Action, float]:
        """The exact distribution of the action in ``ctx``."""
        base, actions = self._plan(ctx)
        if len(actions) == 1:
            return {base: 1.0}
        eps = self.epsilon[ctx.bucket]
        other = eps / (len(actions) - 1)
        return {a: (1.0 - eps if a == base else other) for a in actions}

    def probability(self, ctx: Context, action: Action) -> float:
        """π(action | ctx); 0 for an action the policy never takes there."""
        base, actions = self._plan(ctx)
        if action not in actions:
            return 0.0
        if len(actions) == 1:
            return 1.0
        eps = self.epsilon[ctx.bucket]
        return 1.0 - eps if action == base else eps / (len(actions) - 1)

    def decide(self, ctx: Context, rng: random.Random, force: Route | None = None) -> Decision:
        """Draw the action for one request; ``force`` serves a fixed route (propensity 1)."""
        base, actions = self._plan(ctx)
        if force is not None:
            rule = self.rules[ctx.cell]
            forced = Action(force, base.rerank, rule.fusion if force is Route.HYBRID else None)
            return Decision(forced, 1.0, forced, False, self.version)
        eps = self.epsilon[ctx.bucket]
        if len(actions) == 1 or eps <= 0.0:
            return Decision(base, 1.0, base, False, self.version)
        if rng.random() < eps:
            others = [a for a in actions if a != base]
            return Decision(rng.choice(others), eps / len(others), base, True, self.version)
        return Decision(base, 1.0 - eps, base, False, self.version)

    # ---- variants and documents -------------------------------------------------------
    def with_rules(self, rules: Mapping[Cell, Rule], version: str = "") -> Policy:
        """This policy with some cells' rules replaced (a new, unversioned policy)."""
        return replace(self, rules={**self.rules, **rules}, version=version, _cache={})

    def with_epsilon(self, epsilon: Mapping[WarmthBucket, float], version: str = "") -> Policy:
        """This policy with other exploration rates."""
        return replace(self, epsilon={**self.epsilon, **epsilon}, version=version, _cache={})

    def versioned(self, version: str) -> Policy:
        """The same policy under a version name."""
        return replace(self, version=version, _cache={})

    def definition(self) -> dict[str, Any]:
        """The JSON document of the policy (without its version): what Postgres stores."""
        return {
            "cells": {
                c.label: {
                    "route": r.route.value,
                    "rerank": r.rerank,
                    "content_weight": r.fusion.content_weight,
                    "popularity_weight": r.fusion.popularity_weight,
                }
                for c, r in sorted(self.rules.items())
            },
            "epsilon": {b.value: self.epsilon[b] for b in BUCKETS},
            "explore_fusions": [
                {"content_weight": f.content_weight, "popularity_weight": f.popularity_weight}
                for f in self.explore_fusions
            ],
        }

    def fingerprint(self) -> str:
        """A short hash of :meth:`definition` (equal policies, equal fingerprints)."""
        text = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @classmethod
    def from_definition(cls, doc: Mapping[str, Any], version: str = "") -> Policy:
        """Parse a document written by :meth:`definition`.

        Raises:
            ValueError: a cell, route, weight or rate is missing or malformed.
        """
        try:
            cells = doc["cells"]
            rules = {
                Cell.parse(label): Rule(
                    Route(spec["route"]),
                    bool(spec["rerank"]),
                    Fusion(float(spec["content_weight"]), float(spec["popularity_weight"])),
                )
                for label, spec in cells.items()
            }
            epsilon = {WarmthBucket(b): float(v) for b, v in doc["epsilon"].items()}
            fusions = tuple(
                Fusion(float(f["content_weight"]), float(f["popularity_weight"]))
                for f in doc.get("explore_fusions", [])
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed policy document: missing or bad {exc}") from exc
        return cls(rules, epsilon, fusions, version)

    def describe(self) -> list[tuple[str, str, float]]:
        """(cell, rule, ε) rows, for reports."""
        return [(c.label, self.rules[c].label, self.epsilon[c.bucket]) for c in CELLS]


def contexts_of(
    buckets: Iterable[WarmthBucket] = BUCKETS, rerank_available: bool = True
) -> list[Context]:
    """Every context of the given buckets (query, history), for tests and tables."""
    return [
        Context(b, q, h, rerank_available)
        for b in buckets
        for q in (False, True)
        for h in (False, True)
    ]
