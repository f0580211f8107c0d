"""Offline evaluation of recommendations and routing policies — no Kafka.

Metric functions (:mod:`~recsys.evaluation.ranking`, :mod:`~recsys.evaluation.beyond`,
:mod:`~recsys.evaluation.llm`), off-policy estimators
(:mod:`~recsys.evaluation.offpolicy`), loading archived data
(:mod:`~recsys.evaluation.dataset`) and the full sliced report
(:func:`evaluate`, :func:`render_html`).
"""

from recsys.evaluation.beyond import catalog_coverage, intra_list_diversity, novelty
from recsys.evaluation.dataset import ArchiveTopics, EvaluationData, load_categories
from recsys.evaluation.html import render_html
from recsys.evaluation.llm import (
    cost_by_request,
    hallucination_rate,
    latency_summary,
    llm_involvement_rate,
)
from recsys.evaluation.offpolicy import (
    ROUTING_POLICIES,
    LoggedDecision,
    PolicyTarget,
    effective_sample_size,
    ips,
    register_routing_policy,
    snips,
)
from recsys.evaluation.ranking import (
    average_precision_at_k,
    hit_rate_at_k,
    mean_metric,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
)
from recsys.evaluation.report import evaluate

__all__ = [
    "ROUTING_POLICIES",
    "ArchiveTopics",
    "EvaluationData",
    "LoggedDecision",
    "PolicyTarget",
    "average_precision_at_k",
    "catalog_coverage",
    "cost_by_request",
    "effective_sample_size",
    "evaluate",
    "hallucination_rate",
    "hit_rate_at_k",
    "intra_list_diversity",
    "ips",
    "latency_summary",
    "llm_involvement_rate",
    "load_categories",
    "mean_metric",
    "ndcg_at_k",
    "novelty",
    "recall_at_k",
    "reciprocal_rank",
    "register_routing_policy",
    "render_html",
    "snips",
]
