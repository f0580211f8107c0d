"""Counterfactual replay: re-run logged requests through another policy configuration.

A :class:`Policy` turns a logged :class:`RecRequest` (plus the logged response, when
there is one) into a :class:`RecResponse` whose ``policy`` names the configuration. It
sees the user events that happened *before* each request through :meth:`Policy.observe`
— :func:`replay_requests` interleaves them by event time — so nothing from a request's
future can leak into its answer.

Configurations are named (:data:`POLICY_CONFIGS`): settings overrides such as "no LLM"
or "rerank cap 20". An *engine* builds a policy from a configuration
(:data:`ENGINES`). This module ships one honest engine, ``popularity``: the most
popular items among positive events seen so far, minus what the user already consumed
and the request's exclusions, with the warmth bucket computed from the configuration's
thresholds. It never uses an LLM.

Hook for the serving policy: ``register_engine("serving", factory)`` where
``factory(config)`` returns a :class:`Policy` that runs the real routed pipeline with
``config.overrides`` applied to the serving settings; ``streamrec replay --engine
serving`` then uses it, and every configuration below takes effect.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from recsys.exceptions import ConfigurationError
from recsys.records import (
    EventType,
    Evidence,
    EvidenceKind,
    ExplanationSource,
    RecommendedItem,
    RecRequest,
    RecResponse,
    Route,
    UserEvent,
    WarmthBucket,
)

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "POLICY_CONFIGS",
    "Policy",
    "PolicyConfig",
    "PopularityPolicy",
    "build_policy",
    "register_engine",
    "register_policy_config",
    "replay_requests",
]

DEFAULT_ENGINE = "popularity"


class Policy(Protocol):
    """Answers logged requests the way one configuration would have."""

    @property
    def name(self) -> str:
        """The configuration name, written into ``RecResponse.policy``."""
        ...

    #: True when the policy needs the user events before each request.
    needs_events: bool

    def observe(self, event: UserEvent) -> None:
        """An event that happened before the next request (time order)."""
        ...

    def recommend(self, request: RecRequest, logged: RecResponse | None) -> RecResponse:
        """The response this configuration would have produced."""
        ...


@dataclass(frozen=True)
class PolicyConfig:
    """A named configuration: overrides of serving settings, described for humans."""

    name: str
    description: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


POLICY_CONFIGS: dict[str, PolicyConfig] = {}
PolicyFactory = Callable[[PolicyConfig], Policy]
ENGINES: dict[str, PolicyFactory] = {}


def register_policy_config(config: PolicyConfig) -> None:
    """Add (or replace) a named configuration."""
    POLICY_CONFIGS[config.name] = config


def register_engine(name: str, factory: PolicyFactory) -> None:
    """Add an engine that builds policies from configurations."""
    ENGINES[name] = factory


def build_policy(config_name: str, engine: str = DEFAULT_ENGINE) -> Policy:
    """The policy of a named configuration, built by ``engine``.

    Raises:
        ConfigurationError: unknown configuration or engine (the message lists the known).
    """
    config = POLICY_CONFIGS.get(config_name)
    if config is None:
        raise ConfigurationError(
            f"unknown policy configuration {config_name!r}; known: "
            + ", ".join(sorted(POLICY_CONFIGS))
        )
    factory = ENGINES.get(engine)
    if factory is None:
        raise ConfigurationError(
            f"unknown policy engine {engine!r}; known: {', '.join(sorted(ENGINES))}"
        )
    return factory(config)


_POSITIVE = frozenset({EventType.CLICK, EventType.CART, EventType.PURCHASE})


def _positive(event: UserEvent) -> bool:
    if event.event_type in _POSITIVE:
        return True
    return event.event_type is EventType.RATING and (event.rating or 0.0) >= 4.0


class PopularityPolicy:
    """Stand-in engine: popularity among the positive events seen so far.

    Honours the configuration's ``cold_max_interactions`` / ``warm_min_interactions``
    (the warmth bucket it reports); every LLM or retrieval knob is moot for it, because
    it never calls an LLM nor retrieves by content.
    """

    needs_events = True

    def __init__(self, name: str, cold_max: int = 5, warm_min: int = 51) -> None:
        self._name = name
        self.cold_max = cold_max
        self.warm_min = warm_min
        self.popularity: Counter[str] = Counter()
        self.consumed: dict[str, set[str]] = {}
        self.positives: Counter[str] = Counter()

    @property
    def name(self) -> str:
        return self._name

    @classmethod
    def from_config(cls, config: PolicyConfig) -> PopularityPolicy:
        o = config.overrides
        return cls(
            config.name,
            cold_max=int(o.get("cold_max_interactions", 5)),
            warm_min=int(o.get("warm_min_interactions", 51)),
        )

    def observe(self, event: UserEvent) -> None:
        if event.item_id is None:
            return
        self.consumed.setdefault(event.user_id, set()).add(event.item_id)
        if _positive(event):
            self.popularity[event.item_id] += 1
            self.positives[event.user_id] += 1

    def warmth(self, user_id: str) -> WarmthBucket:
        n = self.positives[user_id]
        if n <= self.cold_max:
            return WarmthBucket.COLD
        return WarmthBucket.WARM if n >= self.warm_min else WarmthBucket.WARMING

    def recommend(self, request: RecRequest, logged: RecResponse | None) -> RecResponse:
        started = time.perf_counter()
        skip = self.consumed.get(request.user_id, set()) | set(request.exclude_item_ids)
        top = heapq.nsmallest(
            request.k,
            ((-count, item) for item, count in self.popularity.items() if item not in skip),
        )
        items = [
            RecommendedItem(
                item_id=item,
                rank=rank,
                score=float(-neg),
                source="popularity",
                explanation=f"Popular: {-neg} positive interactions so far.",
                explanation_source=ExplanationSource.TEMPLATE,
                evidence=[Evidence(kind=EvidenceKind.POPULAR, value=str(-neg))],
            )
            for rank, (neg, item) in enumerate(top, start=1)
        ]
        return RecResponse(
            request_id=request.request_id,
            user_id=request.user_id,
            items=items,
            route=Route.POPULARITY,
            warmth_bucket=self.warmth(request.user_id),
            propensity=1.0,
            llm_used=False,
            policy=self.name,
            latency_ms=(time.perf_counter() - started) * 1000,
            # the logged time, so outcomes are judged against the same moment
            produced_at=logged.produced_at if logged is not None else request.requested_at,
        )


def replay_requests(
    policy: Policy,
    requests: Iterable[RecRequest],
    events: Iterable[UserEvent],
    logged: Mapping[str, RecResponse] | None = None,
) -> Iterator[tuple[RecRequest, RecResponse]]:
    """Answer ``requests`` in time order, showing the policy each event that happened
    strictly before a request first."""
    logged = logged or {}
    ordered_events = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    position = 0
    for request in sorted(requests, key=lambda r: (r.requested_at, r.request_id)):
        while (
            position < len(ordered_events)
            and ordered_events[position].occurred_at < request.requested_at
        ):
            policy.observe(ordered_events[position])
            position += 1
        yield request, policy.recommend(request, logged.get(request.request_id))


register_engine("popularity", PopularityPolicy.from_config)
for _config in (
    PolicyConfig("production", "The logged configuration, unchanged."),
    PolicyConfig(
        "no-llm",
        "No LLM: intent parsing, rerank and explanations off.",
        {"llm_intent": False, "llm_rerank": False, "llm_explain": False},
    ),
    PolicyConfig("rerank-cap-20", "The LLM reranks at most 20 candidates.", {"rerank_cap": 20}),
    PolicyConfig(
        "raw-embeddings",
        "Content retrieval on raw-text embeddings instead of enriched ones.",
        {"serving_space": "raw"},
    ),
    PolicyConfig(
        "enriched-embeddings",
        "Content retrieval on LLM-enriched embeddings.",
        {"serving_space": "enriched"},
    ),
    PolicyConfig(
        "warmth-strict",
        "Other warmth thresholds: cold up to 2 positives, warm from 20.",
        {"cold_max_interactions": 2, "warm_min_interactions": 20},
    ),
):
    register_policy_config(_config)
