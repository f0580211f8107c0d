"""One evaluation: every metric per system (logged production and counterfactual
policies), sliced by warmth bucket, route and llm_used, plus the LLM log summary and
off-policy estimates of other routing policies. The result is plain JSON-able data;
``streamrec evaluate`` prints it as tables, JSON and an HTML report.

Relevance of a request: items the user acted on positively (CLICK, CART, PURCHASE,
RATING ≥ 4) within the attribution window after the logged impression, taken from the
archived user events when there are any — the same judgement for every policy, shown
or not. Without archived events it falls back to the feedback examples (successful
shown items), which can only credit items production showed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from recsys.evaluation.beyond import catalog_coverage, intra_list_diversity, novelty
from recsys.evaluation.dataset import (
    EvaluationData,
    positive_event,
    relevance_from_events,
    relevance_from_examples,
    reward_of,
)
from recsys.evaluation.intervals import mean_ci, percentile_ci
from recsys.evaluation.llm import (
    JUDGED_USE_CASES,
    cost_by_request,
    hallucination_rate,
    latency_summary,
    llm_involvement_rate,
)
from recsys.evaluation.offpolicy import LoggedDecision, RoutingPolicy, estimate, known_targets
from recsys.evaluation.ranking import (
    average_precision_at_k,
    hit_rate_at_k,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
)
from recsys.evaluation.relevance import (
    EVENTS,
    EXAMPLES,
    constant_by_construction,
    omit,
    relevance_meaning,
)
from recsys.records import LlmInvolvement, RecResponse

__all__ = ["SLICES", "evaluate", "logged_decisions", "slice_metrics"]

PRODUCTION = "production"

#: Slice name → how to read the slice value off a response.
SLICES: dict[str, Callable[[RecResponse], str]] = {
    "warmth_bucket": lambda r: r.warmth_bucket.value,
    "route": lambda r: r.route.value,
    "llm_used": lambda r: "true" if r.llm_used else "false",
}


def slice_metrics(
    responses: Sequence[RecResponse],
    *,
    k: int,
    relevance: Mapping[str, set[str]],
    catalog_size: int,
    popularity: Mapping[str, int],
    n_users: int,
    llm_log: Sequence[LlmInvolvement] | None,
    categories: Mapping[str, list[str]] | None = None,
    vectors: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every response-level metric over one group of responses."""
    lists = [[i.item_id for i in sorted(r.items, key=lambda i: i.rank)] for r in responses]
    pairs = [
        (rec, relevance.get(r.request_id, set())) for rec, r in zip(lists, responses, strict=True)
    ]
    judged = [(rec, rel) for rec, rel in pairs if rel]
    ranking: dict[str, Callable[[Sequence[str], set[str]], float]] = {
        f"recall@{k}": lambda a, b: recall_at_k(a, b, k),
        f"ndcg@{k}": lambda a, b: ndcg_at_k(a, b, k),
        f"map@{k}": lambda a, b: average_precision_at_k(a, b, k),
        "mrr": reciprocal_rank,
        f"hit_rate@{k}": lambda a, b: hit_rate_at_k(a, b, k),
    }
    per_request = {name: [f(rec, rel) for rec, rel in judged] for name, f in ranking.items()}
    latencies = [r.latency_ms for r in responses]
    treated = [1.0 if r.llm_used else 0.0 for r in responses]
    ci: dict[str, Any] = {name: mean_ci(values) for name, values in per_request.items()}
    ci |= {
        "llm_involvement_rate": mean_ci(treated),
        "latency_ms_p50": percentile_ci(latencies, 50),
        "latency_ms_p95": percentile_ci(latencies, 95),
    }
    out: dict[str, Any] = {
        "n": len(responses),
        "n_judged": len(judged),
        **{name: sum(v) / len(v) if v else None for name, v in per_request.items()},
        "coverage": catalog_coverage(lists, catalog_size, k) if catalog_size else None,
        "novelty": novelty(lists, k, popularity, n_users) if n_users else None,
        "ild": (
            intra_list_diversity(lists, k, categories=categories)
            if categories is not None
            else intra_list_diversity(lists, k, vectors=vectors)
            if vectors is not None
            else None
        ),
        "llm_involvement_rate": llm_involvement_rate(responses),
        **latency_summary(responses),
    }
    if llm_log is None:  # a counterfactual run logs no LLM calls of its own
        out.update({"cost_usd_mean": None, "cost_usd_total": None, "hallucination_rate": None})
    else:
        ids = {r.request_id for r in responses}
        mine = [rec for rec in llm_log if rec.request_id in ids]
        costs = cost_by_request(mine)
        total = sum(costs.values())
        out.update(
            {
                "cost_usd_mean": total / len(responses) if responses else None,
                "cost_usd_total": total,
                "hallucination_rate": hallucination_rate(mine),
                "llm_calls": sum(1 for rec in mine if rec.called),
            }
        )
    out["ci"] = {name: list(v) if v is not None else None for name, v in ci.items()}
    return out


def logged_decisions(data: EvaluationData, reward: str = "any") -> list[LoggedDecision]:
    """Logged production requests that have feedback, as off-policy decisions."""
    rewards: dict[str, float] = {}
    for e in data.examples:
        hit = 1.0 if reward_of(e, reward) else 0.0
        rewards[e.request_id] = max(rewards.get(e.request_id, 0.0), hit)
    out = []
    for r in data.responses:
        if r.request_id not in rewards or r.propensity <= 0:
            continue
        if r.policy_version is not None:
            has_query = r.has_query
        else:
            request = data.requests.get(r.request_id)
            has_query = bool(request and request.query and request.query.strip())
        out.append(
            LoggedDecision(
                request_id=r.request_id,
                warmth_bucket=r.warmth_bucket.value,
                has_query=has_query,
                route=r.route.value,
                llm_used=r.llm_used,
                propensity=r.propensity,
                reward=rewards[r.request_id],
                policy_version=r.policy_version,
                has_history=r.has_history,
                rerank_available=r.rerank_available,
                rerank=r.rerank,
                content_weight=r.content_weight,
                popularity_weight=r.popularity_weight,
            )
        )
    return out


def _llm_summary(records: Iterable[LlmInvolvement]) -> dict[str, dict[str, Any]]:
    by_case: dict[str, list[LlmInvolvement]] = {}
    for rec in records:
        by_case.setdefault(rec.use_case.value, []).append(rec)
    out = {}
    for case, recs in sorted(by_case.items()):
        calls = [r for r in recs if r.called]
        out[case] = {
            "records": len(recs),
            "called": len(calls),
            "used": sum(1 for r in recs if r.used),
            "cache_hits": sum(1 for r in recs if r.cache_hit),
            "fallbacks": sum(1 for r in recs if r.fallback),
            "hallucination_rate": (
                hallucination_rate(recs) if recs[0].use_case in JUDGED_USE_CASES else None
            ),
            "tokens_in": sum(r.tokens_in for r in recs),
            "tokens_out": sum(r.tokens_out for r in recs),
            "cost_usd": sum(r.cost_usd for r in recs),
            "latency_ms_mean": sum(r.latency_ms for r in calls) / len(calls) if calls else None,
            "decisions": dict(sorted(_count(r.decision for r in recs).items())),
        }
    return out


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def evaluate(
    data: EvaluationData,
    *,
    k: int = 10,
    window_s: float = 1800.0,
    targets: Sequence[str] = ("logged", "router", "router-no-llm", "router-llm-eligible"),
    clip: float | None = None,
    reward: str = "any",
    policies: Mapping[str, RoutingPolicy] | None = None,
) -> dict[str, Any]:
    """The whole evaluation as JSON-able data.

    ``policies`` maps target names to policies (default: the registered ones, see
    :func:`recsys.evaluation.offpolicy.known_targets`).
    """
    targets_known = dict(policies) if policies is not None else known_targets()
    unknown = [t for t in targets if t not in targets_known]
    if unknown:
        names = ", ".join(sorted(targets_known))
        raise ValueError(f"unknown target policy {unknown}; known: {names}")
    systems: dict[str, list[RecResponse]] = {PRODUCTION: data.responses, **data.counterfactual}
    if data.events is not None:
        relevance_source = EVENTS
        everything = [r for rs in systems.values() for r in rs]
        relevance = relevance_from_events(everything, data.events, window_s)
        interactions = [
            (e.user_id, e.item_id)
            for e in data.events
            if e.item_id is not None and positive_event(e)
        ]
        n_users = len({e.user_id for e in data.events}) or len({r.user_id for r in data.responses})
    else:
        relevance_source = EXAMPLES
        relevance = relevance_from_examples(data.examples, reward)
        interactions = [(e.user_id, e.item_id) for e in data.examples if reward_of(e, "any")]
        n_users = len({r.user_id for r in data.responses})
    popularity: dict[str, int] = {}
    for _user, item in set(interactions):
        assert item is not None
        popularity[item] = popularity.get(item, 0) + 1
    if data.categories is not None:
        catalog_size = len(data.categories)
        catalog_source = "categories"
    else:
        known = {i for _, i in interactions if i is not None}
        known |= {i.item_id for rs in systems.values() for r in rs for i in r.items}
        catalog_size = len(known)
        catalog_source = "items seen in events and responses"
    common: dict[str, Any] = {
        "k": k,
        "relevance": relevance,
        "catalog_size": catalog_size,
        "popularity": popularity,
        "n_users": n_users,
        "categories": data.categories,
        "vectors": data.vectors,
    }
    report_systems: dict[str, Any] = {}
    for name, responses in systems.items():
        log = data.llm_log if name == PRODUCTION else None
        entry: dict[str, Any] = {"overall": slice_metrics(responses, llm_log=log, **common)}
        for slice_name, key in SLICES.items():
            groups: dict[str, list[RecResponse]] = {}
            for r in responses:
                groups.setdefault(key(r), []).append(r)
            entry[f"by_{slice_name}"] = {
                value: slice_metrics(group, llm_log=log, **common)
                for value, group in sorted(groups.items())
            }
        constant = constant_by_construction(
            relevance_source, production=name == PRODUCTION, responses=responses, k=k
        )
        omit(entry, constant)
        entry["relevance"] = relevance_meaning(
            relevance_source, production=name == PRODUCTION, window_s=window_s
        )
        entry["omitted"] = constant
        report_systems[name] = entry
    decisions = logged_decisions(data, reward)
    return {
        "k": k,
        "window_s": window_s,
        "relevance_source": relevance_source,
        "catalog_size": catalog_size,
        "catalog_source": catalog_source,
        "diversity_source": (
            "categories"
            if data.categories is not None
            else "vectors"
            if data.vectors is not None
            else None
        ),
        "systems": report_systems,
        # shed requests (EXPIRED answers): no system is judged on them (dataset.py)
        "expired_requests": len(data.expired),
        "llm": _llm_summary(data.llm_log),
        "off_policy": {
            "reward": reward,
            "clip": clip,
            "n_logged": len(decisions),
            "logged_mean_reward": (
                sum(d.reward for d in decisions) / len(decisions) if decisions else None
            ),
            "estimates": {name: estimate(targets_known[name], decisions, clip) for name in targets},
        },
    }
