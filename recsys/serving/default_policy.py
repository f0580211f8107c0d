"""The policy the settings describe: what serves until a policy version is activated.

It is exactly the serving rule of :class:`~recsys.serving.config.ServingConfig`: the
per-bucket routes without a query (``cold_route``/``warming_route``/``warm_route``),
HYBRID with a query (CONTENT for cold users when ``cold_route`` is CONTENT), the cold
fusion weights for cold users and the hybrid ones otherwise, and the LLM rerank where
the design makes a request eligible — a query, or a cold user with history.
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
    fusion = (
        Fusion(cfg.cold_content_weight, cfg.cold_popularity_weight)
        if cold
        else Fusion(cfg.hybrid_content_weight, cfg.popularity_weight)
    )
    no_query = {
        WarmthBucket.COLD: cfg.cold_route,
        WarmthBucket.WARMING: cfg.warming_route,
        WarmthBucket.WARM: cfg.warm_route,
    }[cell.bucket]
    if not cell.query:
        route = no_query
    else:
        route = Route.CONTENT if cold and cfg.cold_route is Route.CONTENT else Route.HYBRID
    return Rule(route, cfg.llm_rerank and (cell.query or cold), fusion)


def default_policy(cfg: ServingConfig) -> Policy:
    """The policy ``cfg`` describes, versioned ``settings-<fingerprint>``."""
    policy = Policy(
        rules={cell: _rule(cfg, cell) for cell in CELLS},
        epsilon={b: cfg.epsilon_of(b) for b in BUCKETS},
    )
    return policy.versioned(settings_version(policy))
