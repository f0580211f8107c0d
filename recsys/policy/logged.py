"""Logged decisions: what serving writes about a decision, and reading it back.

Serving stamps every response (and so every feedback example) with the context the
policy saw and the action it took (:func:`response_fields`), and every ``rec.llm-log``
record with the policy version and the action's label (:func:`log_fields`). A learner
reads them back per request (:func:`requests_from_examples`): one
:class:`LoggedRequest` with the context, the action, its propensity and the reward.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from recsys.policy.model import Action, Context, Decision, Fusion
from recsys.records import FeedbackExample, RecResponse, Route, WarmthBucket

__all__ = [
    "LoggedRequest",
    "Rewards",
    "log_fields",
    "logged_action",
    "logged_context",
    "requests_from_examples",
    "response_fields",
]

POSITIVE_RATING = 4.0


@dataclass(frozen=True)
class LoggedRequest:
    """One served request as a bandit round: context, action, propensity, reward."""

    request_id: str
    context: Context
    action: Action
    propensity: float
    reward: float
    policy_version: str | None = None


def response_fields(decision: Decision, ctx: Context) -> dict[str, Any]:
    """The decision's fields of a :class:`~recsys.records.RecResponse`."""
    fusion = decision.action.fusion
    return {
        "propensity": decision.propensity,
        "policy_version": decision.policy_version,
        "has_query": ctx.has_query,
        "has_history": ctx.has_history,
        "rerank_available": ctx.rerank_available,
        "rerank": decision.action.rerank,
        "content_weight": fusion.content_weight if fusion else None,
        "popularity_weight": fusion.popularity_weight if fusion else None,
        "explored": decision.explored,
    }


def log_fields(decision: Decision) -> dict[str, Any]:
    """The decision's fields of a ``rec.llm-log`` record."""
    return {
        "route": decision.route.value,
        "propensity": decision.propensity,
        "policy_version": decision.policy_version,
        "action": decision.action.label,
    }


def logged_context(record: RecResponse | FeedbackExample) -> Context:
    """The context a logged decision was made in."""
    return Context(
        WarmthBucket(
            record.warmth_bucket.value
            if isinstance(record.warmth_bucket, WarmthBucket)
            else record.warmth_bucket
        ),
        record.has_query,
        record.has_history,
        record.rerank_available,
    )


def logged_action(record: RecResponse | FeedbackExample) -> Action:
    """The action a logged decision took."""
    route = Route(record.route.value if isinstance(record.route, Route) else record.route)
    fusion = None
    if route is Route.HYBRID:
        fusion = Fusion(record.content_weight or 0.0, record.popularity_weight or 0.0)
    return Action(route, record.rerank, fusion)


class Rewards:
    """How a request's reward is read off its feedback examples (any shown item)."""

    KINDS = ("any", "click", "purchase")

    def __init__(self, kind: str = "any") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown reward {kind!r}; choose any, click or purchase")
        self.kind = kind

    def success(self, e: FeedbackExample) -> bool:
        """Whether one shown item succeeded."""
        if self.kind == "click":
            return e.clicked
        if self.kind == "purchase":
            return e.purchased
        return (
            e.clicked
            or e.carted
            or e.purchased
            or (e.rating is not None and e.rating >= POSITIVE_RATING)
        )


def requests_from_examples(
    examples: Iterable[FeedbackExample], reward: Rewards | None = None
) -> tuple[list[LoggedRequest], dict[str, int]]:
    """One :class:`LoggedRequest` per request id, and counts of what was left out.

    Examples are de-duplicated by ``example_id``; a request's reward is 1 when any of
    its shown items succeeded, else 0. Requests logged without a policy version (before
    exact propensities were logged) or with a non-positive propensity are left out
    and counted.
    """
    reward = reward or Rewards()
    first: dict[str, FeedbackExample] = {}
    hit: dict[str, bool] = {}
    seen: set[str] = set()
    skipped = {"duplicates": 0, "no_policy_version": 0, "zero_propensity": 0, "examples": 0}
    for e in examples:
        skipped["examples"] += 1
        if e.example_id in seen:
            skipped["duplicates"] += 1
            continue
        seen.add(e.example_id)
        first.setdefault(e.request_id, e)
        hit[e.request_id] = hit.get(e.request_id, False) or reward.success(e)
    out = []
    for rid, e in first.items():
        if e.policy_version is None:
            skipped["no_policy_version"] += 1
            continue
        if e.propensity <= 0:
            skipped["zero_propensity"] += 1
            continue
        out.append(
            LoggedRequest(
                request_id=rid,
                context=logged_context(e),
                action=logged_action(e),
                propensity=e.propensity,
                reward=1.0 if hit[rid] else 0.0,
                policy_version=e.policy_version,
            )
        )
    return out, skipped
