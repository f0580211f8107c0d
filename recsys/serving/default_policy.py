"""The policy the settings describe: what serves until a policy version is activated.

It is exactly the serving rule of :class:`~recsys.serving.config.ServingConfig`: each
bucket's route without a query (``cold``/``warming``/``warm``, a
:class:`~recsys.serving.config.BucketRoute` each — the shipped ones chosen by
:mod:`recsys.evaluation.route_selection`), HYBRID with a query (CONTENT for cold users
whose route is CONTENT), each bucket's fusion weights, and the LLM rerank where the
design makes a request eligible — a query, or a cold user with history.
"""

from __future__ import annotations

from recsys.policy.model import BUCKETS, CELLS, Cell, Fusion, Policy, Rule
from recsys.records import Route, WarmthBucket
from recsys.serving.config import ServingConfig

__all__ = ["default_policy", "settings_version"]


def settings_version(policy: Policy) -> str:
    """``settings-<fingerprint>``: the version name of a settings-derived policy."""
    return f"settings-{policy.fingerprint()}"


def _rule(cfg: ServingConfig, cell: Cell) -> Rule:
    cold = cell.bucket is WarmthBucket.COLD
    bucket = cfg.bucket_route(cell.bucket)
    fusion = Fusion(bucket.content_weight, bucket.popularity_weight)
    if not cell.query:
        route = bucket.route
    else:
        route = Route.CONTENT if cold and bucket.route is Route.CONTENT else Route.HYBRID
    return Rule(route, cfg.llm_rerank and (cell.query or cold), fusion)


def default_policy(cfg: ServingConfig) -> Policy:
    """The policy ``cfg`` describes, versioned ``settings-<fingerprint>``."""
    policy = Policy(
        rules={cell: _rule(cfg, cell) for cell in CELLS},
        epsilon={b: cfg.epsilon_of(b) for b in BUCKETS},
    )
    return policy.versioned(settings_version(policy))
