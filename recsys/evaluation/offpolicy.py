"""Off-policy estimates of other serving policies from logged propensities.

The logging policy chose, for each request, an *action* — the route, HYBRID's fusion
weights and whether the LLM reranks — with the exact probability logged as
``RecResponse.propensity`` (:mod:`recsys.policy.model`). The targets are serving
policies too (:class:`PolicyTarget`): ``router`` is the policy that actually ships (the
active version, or the settings' policy), and its named variants change one thing
(:func:`recsys.policy.space.named_variants`). For a target π that gives the logged
action probability ``π(a | x)``, with importance weight ``w = π(a | x) / propensity``:

* IPS   = (1/n) Σ w·r — unbiased when the assumptions below hold; high variance.
* SNIPS = Σ w·r / Σ w — self-normalised: slightly biased, much lower variance, and
  exactly the logged mean reward when π equals the logging policy.
* ``clip`` caps each weight (``min(w, clip)``): less variance, bias towards 0.
* ESS (effective sample size) = (Σ w)² / Σ w² says how many logged requests the
  estimate really rests on.

Assumptions, to be stated next to any figure:

1. The logged propensity is the true probability with which the logging policy chose
   the logged action in that context (a deterministic router logs 1.0).
2. Positivity: every action π may take in a context had a non-zero logging
   probability there. A deterministic logger supports only targets that agree with it
   where they put mass; elsewhere the estimate is biased towards 0 (IPS) or rests only
   on the agreeing requests (SNIPS) — ESS shows it.
3. The reward of a request depends on its context and action only (no interference
   between requests; the context a target policy sees is what was logged).
4. The context the target policy conditions on (warmth bucket, query, history, LLM
   available) is all that confounds action and reward.

:mod:`recsys.policy.estimators` adds the doubly robust estimator and bootstrap
intervals (``streamrec learn-policy``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from recsys.evaluation.intervals import mean_ci, ratio_ci
from recsys.policy.model import Action, Context, Fusion, Policy
from recsys.policy.space import named_variants
from recsys.records import Route, WarmthBucket

__all__ = [
    "ROUTING_POLICIES",
    "LoggedDecision",
    "LoggedPolicy",
    "PolicyTarget",
    "RoutingPolicy",
    "effective_sample_size",
    "estimate",
    "importance_weights",
    "ips",
    "known_targets",
    "policy_targets",
    "register_policy",
    "register_routing_policy",
    "snips",
]


@dataclass(frozen=True)
class LoggedDecision:
    """One logged request: context, action, propensity and reward.

    The decision fields (``has_history`` … ``popularity_weight``) are None on records
    logged before serving logged its whole decision (no ``policy_version``).
    """

    request_id: str
    warmth_bucket: str
    has_query: bool
    route: str
    llm_used: bool
    propensity: float
    reward: float
    policy_version: str | None = None
    has_history: bool | None = None
    rerank_available: bool | None = None
    rerank: bool | None = None
    content_weight: float | None = None
    popularity_weight: float | None = None


class RoutingPolicy(Protocol):
    """A target policy: probability of the logged action in the logged context."""

    @property
    def name(self) -> str:
        """Name under which ``streamrec evaluate --target`` finds it."""
        ...

    def probability(self, decision: LoggedDecision) -> float:
        """π(logged action | logged context)."""
        ...


def importance_weights(
    propensities: Sequence[float], target_probs: Sequence[float], clip: float | None = None
) -> list[float]:
    """``π(a|x) / p`` per request, capped at ``clip`` when given."""
    if len(propensities) != len(target_probs):
        raise ValueError("propensities and target probabilities differ in length")
    out = []
    for p, t in zip(propensities, target_probs, strict=True):
        if not 0.0 < p <= 1.0:
            raise ValueError(f"a logged propensity must be in (0, 1], got {p}")
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"a target probability must be in [0, 1], got {t}")
        w = t / p
        out.append(min(w, clip) if clip is not None else w)
    return out


def ips(
    rewards: Sequence[float],
    propensities: Sequence[float],
    target_probs: Sequence[float],
    clip: float | None = None,
) -> float:
    """Inverse propensity scoring estimate of the target's mean reward."""
    if not rewards:
        raise ValueError("no logged requests")
    w = importance_weights(propensities, target_probs, clip)
    return sum(wi * r for wi, r in zip(w, rewards, strict=True)) / len(rewards)


def snips(
    rewards: Sequence[float],
    propensities: Sequence[float],
    target_probs: Sequence[float],
    clip: float | None = None,
) -> float:
    """Self-normalised IPS; NaN when the target puts no weight on any logged action."""
    if not rewards:
        raise ValueError("no logged requests")
    w = importance_weights(propensities, target_probs, clip)
    total = sum(w)
    if total == 0:
        return math.nan
    return sum(wi * r for wi, r in zip(w, rewards, strict=True)) / total


def effective_sample_size(weights: Sequence[float]) -> float:
    """(Σ w)² / Σ w²; 0 when every weight is 0."""
    sq = sum(w * w for w in weights)
    return (sum(weights) ** 2) / sq if sq else 0.0


def estimate(
    policy: RoutingPolicy, decisions: Sequence[LoggedDecision], clip: float | None = None
) -> dict[str, float | int | list[float] | None]:
    """IPS, SNIPS, ESS and matched share of ``policy`` over ``decisions``, with bootstrap
    intervals of IPS and SNIPS (:mod:`recsys.evaluation.intervals`)."""
    if not decisions:
        return {
            "n": 0,
            "ips": None,
            "snips": None,
            "ess": None,
            "support": None,
            "ips_ci": None,
            "snips_ci": None,
        }
    rewards = [d.reward for d in decisions]
    props = [d.propensity for d in decisions]
    target = [policy.probability(d) for d in decisions]
    weights = importance_weights(props, target, clip)
    value = snips(rewards, props, target, clip)
    weighted = [w * r for w, r in zip(weights, rewards, strict=True)]
    ips_ci, snips_ci = mean_ci(weighted), ratio_ci(weighted, weights)
    return {
        "n": len(decisions),
        "ips": ips(rewards, props, target, clip),
        "snips": None if math.isnan(value) else value,
        "ess": effective_sample_size(weights),
        "support": sum(1 for t in target if t > 0) / len(target),
        "ips_ci": list(ips_ci) if ips_ci is not None else None,
        "snips_ci": list(snips_ci) if snips_ci is not None else None,
    }


class LoggedPolicy:
    """The logging policy itself (weights 1): IPS = SNIPS = the logged mean reward."""

    name = "logged"

    def probability(self, decision: LoggedDecision) -> float:
        return decision.propensity


@dataclass(frozen=True)
class PolicyTarget:
    """A serving policy (:class:`recsys.policy.model.Policy`) as a target: the exact
    probability it gives the logged action — route, HYBRID fusion weights and rerank
    decision — in the logged context.

    Records logged before the whole decision was (no policy version) are read as well as
    they allow: the rerank decision is taken to be ``llm_used``, a user on CF or HYBRID,
    or not cold, to have had history, and HYBRID's weights to be the target's own.
    """

    name: str
    policy: Policy

    def probability(self, decision: LoggedDecision) -> float:
        bucket = WarmthBucket(decision.warmth_bucket)
        route = Route(decision.route)
        if decision.policy_version is None:  # legacy record
            history = bucket is not WarmthBucket.COLD or route in (Route.CF, Route.HYBRID)
            ctx = Context(bucket, decision.has_query, history, True)
            fusion = self.policy.rules[ctx.cell].fusion if route is Route.HYBRID else None
            return self.policy.probability(ctx, Action(route, decision.llm_used, fusion))
        ctx = Context(
            bucket,
            decision.has_query,
            bool(decision.has_history),
            bool(decision.rerank_available),
        )
        fusion = None
        if route is Route.HYBRID:
            fusion = Fusion(decision.content_weight or 0.0, decision.popularity_weight or 0.0)
        return self.policy.probability(ctx, Action(route, bool(decision.rerank), fusion))


def policy_targets(policy: Policy, prefix: str = "router") -> dict[str, RoutingPolicy]:
    """``logged`` and :func:`recsys.policy.space.named_variants` of ``policy`` as targets:
    ``router`` (the policy itself), ``router-no-llm``, ``router-llm-eligible``,
    ``cf-only``, ``content-only``, ``hybrid-only``, ``popularity-only``."""
    out: dict[str, RoutingPolicy] = {"logged": LoggedPolicy()}
    for name, variant in named_variants(policy, prefix).items():
        out[name] = PolicyTarget(name, variant)
    return out


#: Targets ``streamrec evaluate --target`` knows without a database: the settings'
#: policy and its variants (the command replaces them with the active version's).
ROUTING_POLICIES: dict[str, RoutingPolicy] = {}


def register_routing_policy(policy: RoutingPolicy) -> None:
    """Make a target policy available to ``streamrec evaluate --target NAME``."""
    ROUTING_POLICIES[policy.name] = policy


def register_policy(policy: Policy, prefix: str = "router") -> Mapping[str, RoutingPolicy]:
    """Register ``policy`` and its named variants (replacing earlier ones)."""
    targets = policy_targets(policy, prefix)
    ROUTING_POLICIES.update(targets)
    return targets


def known_targets() -> dict[str, RoutingPolicy]:
    """The registered targets; the settings-default policy's until another is registered."""
    if "router" not in ROUTING_POLICIES:
        from recsys.serving.config import ServingConfig
        from recsys.serving.default_policy import default_policy

        for name, target in policy_targets(default_policy(ServingConfig())).items():
            ROUTING_POLICIES.setdefault(name, target)
    return ROUTING_POLICIES
