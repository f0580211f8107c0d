"""The ``serving`` counterfactual engine: logged requests through the real routed pipeline.

``streamrec replay rec.requests --policy NAME --engine serving`` answers each logged
request with :class:`~recsys.serving.Recommender` under the configuration's settings
overrides (no LLM, rerank cap 20, raw vs enriched vectors, other warmth thresholds), over
the same Postgres the production workers use — items, ALS factors, co-visitation and
popularity as they are *now* — while each user's state is rebuilt from the replayed
events that happened before the request, so a request never sees its own future
clicks. Exploration is off (ε = 0): a counterfactual is the configuration's own policy;
``streamrec evaluate`` judges other routings from the logged propensities instead.
"""

from __future__ import annotations

import asyncio

from recsys import db
from recsys.counterfactual import PolicyConfig, register_engine
from recsys.embedding import Embedder, SentenceTransformerEmbedder
from recsys.exceptions import ConfigurationError
from recsys.records import RecRequest, RecResponse, UserEvent, utcnow
from recsys.serving.query_embedding import QueryEncoder
from recsys.serving.recommender import Recommender
from recsys.serving.user_view import ReplayUsers
from recsys.users.state import UserStateConfig
from streams.settings import Settings, load_settings
from workers.serve_wiring import build_recommender, llm_client_for

__all__ = ["ServingPolicy", "register"]


class ServingPolicy:
    """One configuration of the serving pipeline, answering requests one at a time."""

    needs_events = True

    def __init__(
        self, settings: Settings, config: PolicyConfig, embedder: Embedder | None = None
    ) -> None:
        self._name = config.name
        self.settings = settings.with_overrides(route_epsilon=0.0, **dict(config.overrides))
        if self.settings.database_url is None:
            raise ConfigurationError(
                "the serving engine reads items and CF models from Postgres: set "
                "STREAMREC_DATABASE_URL (or use --database)"
            )
        self.users = ReplayUsers(
            UserStateConfig.from_settings(self.settings.users),
            profile_events=self.settings.cf_profile_events,
        )
        self.embedder = embedder or SentenceTransformerEmbedder(
            self.settings.embedding_model, self.settings.embedding_device
        )
        self.loop = asyncio.new_event_loop()
        self.recommender: Recommender = self.loop.run_until_complete(self._build())

    @property
    def name(self) -> str:
        return self._name

    async def _build(self) -> Recommender:
        s = self.settings
        assert s.database_url is not None
        self.pool = db.async_pool(
            s.database_url.get_secret_value(), name="counterfactual", autocommit=True
        )
        await self.pool.open(wait=True, timeout=30)
        self.encoder = QueryEncoder(self.embedder)
        self.client = llm_client_for(s)
        if self.client is not None:
            _ = self.client.sdk  # import the SDK now, not inside the first request's deadline
        _ = self.embedder.dim  # and load the model
        rec = build_recommender(
            s,
            self.pool,
            self.encoder,
            self.client,
            wait_for_scores=True,  # a replay must not depend on timing
            epsilon=0.0,
            name=self._name,
        )
        await rec.warm()
        rec.users = self.users
        return rec

    def observe(self, event: UserEvent) -> None:
        self.users.observe(event)

    def recommend(self, request: RecRequest, logged: RecResponse | None) -> RecResponse:
        # the logged deadline is kept, counted from now: the replay has its own clock
        request = request.model_copy(update={"requested_at": utcnow()})
        served = self.loop.run_until_complete(self.recommender.recommend(request))
        return served.response

    def close(self) -> None:
        async def shut() -> None:
            self.encoder.close()
            if self.client is not None:
                await self.client.aclose()
            await self.pool.close()

        self.loop.run_until_complete(shut())
        self.loop.close()


def register(settings: Settings | None = None) -> None:
    """Make ``--engine serving`` available (settings from the environment by default)."""
    register_engine("serving", lambda config: ServingPolicy(settings or load_settings(), config))
