"""The serving policy's knobs: one immutable object, built from settings or by a replay."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from recsys.cf.als import FOLDS
from recsys.records import Route, WarmthBucket

__all__ = ["CF_FOLDS", "SHIPPED_ROUTES", "BucketRoute", "CfFold", "ServingConfig", "warmth_of"]

#: How the CF list of a user is made: ALS with the user vector folded in by least squares
#: or by the latent item sum (:data:`recsys.cf.als.Fold`), or — without ALS — the
#: co-visitation neighbours of the user's newest items, each item's neighbours as shares
#: of its own co-visits (:func:`recsys.serving.candidates.cf_candidates`).
CfFold = Literal["least_squares", "item_sum", "covisit"]
CF_FOLDS: tuple[CfFold, ...] = (*FOLDS, "covisit")


@dataclass(frozen=True)
class BucketRoute:
    """How users of one warmth bucket with history are served.

    Attributes:
        route: the route without a query (a query always makes it HYBRID, or CONTENT
            when the route is CONTENT and the user is cold).
        content_weight: HYBRID's reciprocal-rank fusion weight of the content list
            against the CF list's 1.
        popularity_weight: weight of the popularity prior in the content list's scores
            (CONTENT and HYBRID).
        cf_fold: how the CF list is made (CF and HYBRID, :data:`CfFold`): ALS with the
            model's least-squares fold-in or the latent item sum
            (:func:`recsys.cf.als.item_sum`), or the co-visitation neighbours of the
            user's newest items (``covisit``).
    """

    route: Route = Route.HYBRID
    content_weight: float = 1.0
    popularity_weight: float = 0.5
    cf_fold: CfFold = "least_squares"

    def __post_init__(self) -> None:
        if self.content_weight < 0 or self.popularity_weight < 0:
            raise ValueError("fusion weights must be >= 0")
        if self.cf_fold not in CF_FOLDS:
            raise ValueError(f"cf_fold must be one of {', '.join(CF_FOLDS)}")


#: The shipped routes per bucket: what :mod:`recsys.evaluation.route_selection` chose on
#: ml-latest-small's validation split — the best single route of each bucket, since no
#: weighted variant beat it significantly (docs/routing.md: the command and the figures).
SHIPPED_ROUTES: dict[WarmthBucket, BucketRoute] = {
    WarmthBucket.COLD: BucketRoute(Route.HYBRID),
    WarmthBucket.WARMING: BucketRoute(Route.CF),
    WarmthBucket.WARM: BucketRoute(Route.CF),
}


class ServingSettings(Protocol):
    """The settings the serving policy reads (from the users, serving and llm sections)."""

    @property
    def cold_max_interactions(self) -> int: ...
    @property
    def warm_min_interactions(self) -> int: ...
    @property
    def route_epsilon(self) -> float: ...
    @property
    def route_epsilon_cold(self) -> float | None: ...
    @property
    def route_epsilon_warming(self) -> float | None: ...
    @property
    def route_epsilon_warm(self) -> float | None: ...
    @property
    def serving_space(self) -> Literal["raw", "enriched"]: ...
    @property
    def candidate_pool(self) -> int: ...
    @property
    def rerank_cap(self) -> int: ...
    @property
    def content_popularity_weight(self) -> float: ...
    @property
    def llm_rerank(self) -> bool: ...
    @property
    def llm_intent(self) -> bool: ...
    @property
    def llm_explain(self) -> bool: ...
    @property
    def intent_hard_min_confidence(self) -> float: ...


@dataclass(frozen=True)
class ServingConfig:
    """How requests are served.

    Attributes:
        cold_max / warm_min: positives thresholds of the warmth buckets (serving buckets
            the user itself, so a replay can try other thresholds).
        epsilon: probability of exploring a uniformly chosen other feasible action (route,
            fusion arm, rerank decision); the logged propensity makes off-policy
            evaluation of other policies possible (:mod:`recsys.policy`).
        epsilon_cold / epsilon_warming / epsilon_warm: the same per bucket (None =
            ``epsilon``).
        force_route: serve every request through this route (single-route baselines).
        space: which item vectors content retrieval searches ("raw" or "enriched").
        candidate_pool: candidates gathered per request before eligibility and ranking.
        rerank_cap: candidates the LLM may reorder.
        popularity_weight: weight of the popularity prior blended into content scores
            when the user has no history (a query alone); with history, the bucket's.
        diversity: MMR trade-off (0 = pure relevance) for the popularity route.
        cold / warming / warm: how a user of that warmth bucket with history is served
            without a query (:class:`BucketRoute`: the route and its fusion weights;
            :mod:`recsys.serving.default_policy` makes them the settings' policy). The
            defaults are what :mod:`recsys.evaluation.route_selection` chose on
            MovieLens ml-latest-small's validation split (docs/routing.md shows the
            command that reproduces them); DESIGN.md's first rule (warm → CF, cold →
            CONTENT) is one setting of these away.
        llm_rerank / llm_intent / llm_explain: which LLM uses are on (an endpoint must
            also be configured).
        intent_hard_min_confidence: from this confidence an LLM reading of a query is
            applied as hard constraints; a rules reading is always only a preference
            (:mod:`recsys.serving.constraints`).
    """

    cold_max: int = 5
    warm_min: int = 51
    epsilon: float = 0.0
    epsilon_cold: float | None = None
    epsilon_warming: float | None = None
    epsilon_warm: float | None = None
    force_route: Route | None = None
    space: Literal["raw", "enriched"] = "enriched"
    candidate_pool: int = 100
    rerank_cap: int = 30
    popularity_weight: float = 0.5
    diversity: float = 0.3
    cold: BucketRoute = field(default_factory=lambda: SHIPPED_ROUTES[WarmthBucket.COLD])
    warming: BucketRoute = field(default_factory=lambda: SHIPPED_ROUTES[WarmthBucket.WARMING])
    warm: BucketRoute = field(default_factory=lambda: SHIPPED_ROUTES[WarmthBucket.WARM])
    history_max: int = 10
    llm_rerank: bool = True
    llm_intent: bool = True
    llm_explain: bool = False
    intent_hard_min_confidence: float = 0.7
    name: str = "production"

    def bucket_route(self, warmth: WarmthBucket) -> BucketRoute:
        """The route and fusion weights of a user with history in this bucket."""
        if warmth is WarmthBucket.WARM:
            return self.warm
        if warmth is WarmthBucket.WARMING:
            return self.warming
        return self.cold

    @classmethod
    def from_settings(cls, settings: ServingSettings, **overrides: Any) -> ServingConfig:
        """The production policy the process settings describe (``overrides`` win; an
        ``epsilon`` override without per-bucket ones sets every bucket)."""
        values: dict[str, Any] = {
            "cold_max": settings.cold_max_interactions,
            "warm_min": settings.warm_min_interactions,
            "epsilon": settings.route_epsilon,
            "epsilon_cold": settings.route_epsilon_cold,
            "epsilon_warming": settings.route_epsilon_warming,
            "epsilon_warm": settings.route_epsilon_warm,
            "space": settings.serving_space,
            "candidate_pool": settings.candidate_pool,
            "rerank_cap": settings.rerank_cap,
            "popularity_weight": settings.content_popularity_weight,
            "llm_rerank": settings.llm_rerank,
            "llm_intent": settings.llm_intent,
            "llm_explain": settings.llm_explain,
            "intent_hard_min_confidence": settings.intent_hard_min_confidence,
        }
        if "epsilon" in overrides and not {"epsilon_cold", "epsilon_warming", "epsilon_warm"} & set(
            overrides
        ):
            values.update(epsilon_cold=None, epsilon_warming=None, epsilon_warm=None)
        values.update(overrides)
        return cls(**values)

    def epsilon_of(self, bucket: WarmthBucket) -> float:
        """The exploration rate of a bucket."""
        own = {
            WarmthBucket.COLD: self.epsilon_cold,
            WarmthBucket.WARMING: self.epsilon_warming,
            WarmthBucket.WARM: self.epsilon_warm,
        }[bucket]
        return self.epsilon if own is None else own


def warmth_of(positives: int, config: ServingConfig) -> WarmthBucket:
    """Bucket of a user with ``positives`` positive interactions."""
    if positives <= config.cold_max:
        return WarmthBucket.COLD
    if positives >= config.warm_min:
        return WarmthBucket.WARM
    return WarmthBucket.WARMING
