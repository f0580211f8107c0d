"""What "relevant" means in each section of a report, and which metrics that meaning
makes constant.

With archived user events, a request's relevant items are what the user acted on
positively within the attribution window, shown or not: one judgement for every
system. Without them, relevance comes from ``feedback.examples`` — shown items joined
with their outcomes — and only items production showed can be relevant. For the
production system that makes recall@k and hit rate@k equal to 1 for every judged
request whose list fits in the top k: they measure nothing, and are left out (with
the reason) instead of being printed as 1.000. For a counterfactual system the same
relevance credits it only where it agrees with production.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recsys.records import RecResponse

__all__ = ["EVENTS", "EXAMPLES", "constant_by_construction", "omit", "relevance_meaning"]

EVENTS = "user.events"
EXAMPLES = "feedback.examples"
_POSITIVE = "clicked, carted, purchased or rated 4+"


def relevance_meaning(source: str, *, production: bool, window_s: float) -> str:
    """One sentence: what counts as relevant for this system's figures."""
    if source == EVENTS:
        return (
            f"relevant = the items the user {_POSITIVE} within {window_s:g} s after the "
            "response, shown or not (archived user.events): the same judgement for every "
            "system"
        )
    if production:
        return (
            f"relevant = the shown items the user then {_POSITIVE} (feedback.examples): "
            "only shown items can be relevant, so NDCG, MAP and MRR say how high the "
            "acted-on items were shown; archive user.events "
            "(STREAMREC_ARCHIVE_USER_EVENTS=true) to judge items that were not shown"
        )
    return (
        f"relevant = the items production showed that the user then {_POSITIVE} "
        "(feedback.examples): this policy is credited only where it agrees with "
        "production, so its figures lean towards production's"
    )


def constant_by_construction(
    source: str, *, production: bool, responses: Sequence[RecResponse], k: int
) -> dict[str, str]:
    """Metric → why it cannot vary for this system (empty when every metric can)."""
    if source != EXAMPLES or not production or any(len(r.items) > k for r in responses):
        return {}
    why = (
        f"1 for every judged request by construction: relevance comes from {EXAMPLES}, "
        f"so every relevant item is among the (at most {k}) shown"
    )
    return {f"recall@{k}": why, f"hit_rate@{k}": why}


def omit(system: dict[str, Any], metrics: dict[str, str]) -> None:
    """Drop ``metrics`` (and their intervals) from every slice of a system's report."""
    slices = [system["overall"]] + [
        m for key, groups in system.items() if key.startswith("by_") for m in groups.values()
    ]
    for values in slices:
        for name in metrics:
            values.pop(name, None)
            values.get("ci", {}).pop(name, None)
