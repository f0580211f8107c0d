"""The request path: user state → route → candidates → eligibility → rank → (LLM) →
explain → response + one ``rec.llm-log`` record per LLM decision.

Every step degrades instead of failing: no CF model → co-visitation → popularity; no
embedder or no vector → popularity; LLM off, over budget, breaker open, out of time or
answering badly → the ranker's order, with the reason logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recsys.items.model import ItemFilters, ItemRecord
from recsys.policy.logged import log_fields, response_fields
from recsys.policy.model import Action, Context, Decision, Policy
from recsys.records import (
    Evidence,
    ExplanationSource,
    LlmInvolvement,
    LlmUseCase,
    RecommendedItem,
    RecRequest,
    RecResponse,
    Route,
    WarmthBucket,
)
from recsys.serving import candidates as cands
from recsys.serving.candidates import Candidate
from recsys.serving.config import ServingConfig, warmth_of
from recsys.serving.constraints import (
    QueryConstraints,
    Shortfall,
    by_preference,
    levels_of,
    mark_soft_matches,
    preference_parts,
    query_constraints,
    shortfall,
)
from recsys.serving.default_policy import default_policy
from recsys.serving.diversity import diversify
from recsys.serving.explain_llm import LlmExplainer
from recsys.serving.explanations import Grounds, evidence_for, evidence_texts, template_sentence
from recsys.serving.intent import Intent, IntentParser, parse_rules
from recsys.serving.llm_gate import LlmGate
from recsys.serving.ports import CfSource, ItemSource, QueryEmbedder, UserReader, UserView
from recsys.serving.rerank import Candidate as RerankCandidate
from recsys.serving.rerank import LlmReranker, RerankContext
from recsys.serving.steer import Steer
from recsys.serving.untrusted import Sanitiser

__all__ = ["LlmParts", "Recommender", "Served"]

log = logging.getLogger(__name__)

#: Time kept back from the deadline for everything after an LLM call.
FINISH_RESERVE_S = 0.03
POPULAR_HEAD = 1000
CACHE_TTL_S = 5.0


@dataclass(frozen=True)
class Served:
    """A response and the LLM-involvement records that go with it."""

    response: RecResponse
    logs: list[LlmInvolvement]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class LlmParts:
    """The LLM uses serving may make (all optional) and what gates them."""

    reranker: LlmReranker | None = None
    intent: IntentParser | None = None
    explainer: LlmExplainer | None = None
    gate: LlmGate | None = None
    model: str | None = None
    #: cleans and scores untrusted text for all of them (and for query screening)
    sanitiser: Sanitiser | None = None


class _Cached:
    """A value recomputed at most every ``ttl_s`` seconds, by one caller at a time.

    When it is due, the first caller starts one refresh and every caller goes on with the
    previous value until it lands (the popular head and the categories move slowly); only
    the very first value is waited for, by everyone asking meanwhile, through one load.
    Without this, every request in flight when the value expired ran the same query at
    once: a burst of identical 1,000-row reads every few seconds under load.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self.value: Any = None
        self.at = -1e18
        self._loaded = False
        self._refresh: asyncio.Future[Any] | None = None

    async def get(self, make: Callable[[], Any]) -> Any:
        if self._loaded and self.clock() - self.at <= self.ttl_s:
            return self.value
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._load(make))
        if not self._loaded:
            return await asyncio.shield(self._refresh)
        return self.value

    async def _load(self, make: Callable[[], Any]) -> Any:
        try:
            value = await make()
        except Exception:
            if self._loaded:  # a background refresh: keep serving the previous value
                log.warning("refreshing a cached serving value failed", exc_info=True)
                return self.value
            raise
        self.value, self.at, self._loaded = value, self.clock(), True
        return value


def _remaining_s(request: RecRequest, received: float, clock: Callable[[], float]) -> float:
    """Seconds left until the request's deadline (measured from when it was requested)."""
    age = max(0.0, (datetime.now(UTC) - request.requested_at).total_seconds())
    return request.deadline_ms / 1000.0 - max(age, clock() - received)


class Recommender:
    """Serves requests through the routed pipeline; one instance per worker process."""

    def __init__(
        self,
        *,
        items: ItemSource,
        users: UserReader,
        cf: CfSource,
        embedder: QueryEmbedder | None,
        config: ServingConfig,
        llm: LlmParts | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        policy: Policy | None = None,
    ) -> None:
        self.items, self.users, self.cf, self.embedder = items, users, cf, embedder
        self.config = config
        #: The routing policy; replaced whole when a new version is activated.
        self.policy = policy or default_policy(config)
        self.llm = llm or LlmParts()
        self.rng = rng or random.Random()
        self.clock = clock
        self._sanitiser = Sanitiser()
        self._popular = _Cached(CACHE_TTL_S, clock)
        self._categories = _Cached(30.0, clock)

    @property
    def sanitiser(self) -> Sanitiser:
        """The LLM parts' sanitiser (guard + instruction scorer), or a guard-only one."""
        return self.llm.sanitiser or self._sanitiser

    async def warm(self) -> None:
        """Load what the first request would otherwise pay for (call once at start)."""
        await self.sanitiser.warm()

    async def aclose(self) -> None:
        """Stop background work (instruction scoring of text seen by recent requests)."""
        await self.sanitiser.aclose()

    async def popular(self) -> list[tuple[str, float]]:
        """The popular head (cached for a few seconds: it moves slowly)."""
        return list(await self._popular.get(lambda: self.cf.popular(POPULAR_HEAD, ())))

    async def recommend(
        self, request: RecRequest, *, received: float | None = None, steer: Steer | None = None
    ) -> Served:
        """Answer one request; never raises for LLM trouble (only for unreachable stores).

        ``steer`` replaces the request's query, intent and filters (a conversation).
        """
        received = self.clock() if received is None else received
        timings: dict[str, float] = {}
        # the user's state, the query's screening and intent, and the query's vector are
        # independent: the read and the embedding run while the others are worked out
        reading = asyncio.ensure_future(self.users.view(request.user_id))
        embedding: asyncio.Future[np.ndarray] | None = None
        try:
            if steer is None:
                query, flagged, reasons = await self.sanitiser.screen_query(request.query)
            else:
                query, flagged, reasons = steer.query, steer.flagged, steer.reasons
            if query is not None and self.embedder is not None:
                embedding = asyncio.ensure_future(self.embedder.embed(query))
            if steer is None:
                intent, intent_log = await self._intent(request, query, received)
            else:
                intent, intent_log = steer.intent, None
            view = await reading
            timings["user"] = self.clock() - received
            return await self._recommend(
                request,
                received,
                steer,
                timings,
                view,
                (query, flagged, reasons),
                (intent, intent_log),
                embedding,
            )
        finally:
            _settle(reading)
            if embedding is not None:
                _settle(embedding)

    async def _recommend(
        self,
        request: RecRequest,
        received: float,
        steer: Steer | None,
        timings: dict[str, float],
        view: UserView,
        screened: tuple[str | None, bool, tuple[str, ...]],
        parsed: tuple[Intent | None, LlmInvolvement | None],
        embedding: asyncio.Future[np.ndarray] | None,
    ) -> Served:
        cfg = self.config
        logs: list[LlmInvolvement] = []
        query, flagged, reasons = screened
        intent, intent_log = parsed
        warmth = warmth_of(view.positives, cfg)
        history = [*view.session_items, *view.recent_items]
        history = list(dict.fromkeys(history))
        if intent_log is not None:
            logs.append(intent_log)
        if steer is None:
            constraints = query_constraints(
                intent,
                parsed_by_llm=intent_log is not None and intent_log.used,
                min_confidence=cfg.intent_hard_min_confidence,
            )
        else:  # what a conversation's user stated is a constraint, however it was read
            constraints = QueryConstraints(hard=steer.filters, source="rules")
        filters = constraints.hard
        context = Context(
            warmth,
            has_query=query is not None,
            has_history=bool(history),
            rerank_available=cfg.llm_rerank and self.llm.reranker is not None,
        )
        decision = self.policy.decide(context, self.rng, force=cfg.force_route)
        exclude = set(request.exclude_item_ids) | set(view.consumed) | set(history)
        ranked, model_version = await self._candidates(
            decision.action, warmth, view, history, query, filters, exclude, embedding
        )
        timings["candidates"] = self.clock() - received
        # eligibility and the soft preference's levels: one read (a level does not
        # depend on the other items, so the candidates' are asked and the eligible's used)
        ranked = [c for c in ranked if c.item_id not in exclude]
        ids = [c.item_id for c in ranked]
        parts = preference_parts(constraints.soft)
        ok, *meeting = await self.items.eligible_each(ids, [filters, *(p for p, _ in parts)])
        ranked = by_preference(
            [c for c in ranked if c.item_id in ok], levels_of(ids, parts, meeting)
        )
        short: Shortfall | None = None
        if len(ranked) < request.k:

            async def more(filters: ItemFilters | None, taken: set[str]) -> list[Candidate]:
                """The route's candidates under ``filters``; content retrieval's (around
                the query or the profile) when the route runs dry."""
                found: list[Candidate] = []
                actions = [decision.action]
                if decision.route is not Route.CONTENT:
                    actions.append(Action(Route.CONTENT, rerank=False))
                for action in actions:
                    skip = taken | {c.item_id for c in found}
                    more_, _ = await self._candidates(
                        action, warmth, view, history, query, filters, skip, embedding
                    )
                    found += await self._eligible(more_, filters, skip)
                    if len(found) >= request.k:
                        break
                return found

            short = await shortfall(
                self.items, request, decision.route, constraints, exclude, ranked, more
            )
            ranked = ranked + short.topup + short.fill
        # the explanations' vectors (the likely final items' and the history's) are read
        # beside the details; _explain reads only what the final order adds
        early = [c.item_id for c in ranked[: request.k]] + history[:10]
        details, vectors = await asyncio.gather(
            self.items.details(
                [c.item_id for c in ranked[: max(cfg.rerank_cap, request.k * 3)]] + history[:20]
            ),
            self.items.vectors(early),
        )
        if decision.route is Route.POPULARITY and cfg.diversity > 0:
            cats = {i: frozenset(r.categories) for i, r in details.items()}
            head = diversify(ranked[: max(request.k * 4, 40)], cats, request.k * 4, cfg.diversity)
            ranked = head + [c for c in ranked if c not in head]
        order, rerank_log, prompt_version = await self._rerank(
            request,
            view,
            warmth,
            decision,
            (query, flagged, reasons),
            history,
            ranked,
            details,
            received,
        )
        logs.append(rerank_log)
        timings["ranked"] = self.clock() - received
        by_id = {c.item_id: c for c in ranked}
        if short is not None and short.fill:  # items that pass the constraints stay first
            filled = {c.item_id for c in short.fill}
            order = [i for i in order if i not in filled] + [i for i in order if i in filled]
        final = [by_id[i] for i in order[: request.k]]
        items, explain_logs = await self._explain(
            request,
            final,
            history,
            details,
            intent,
            received,
            steer.stated if steer else None,
            (set(early), vectors),
        )
        if rerank_log.used:  # what the LLM changed: where the ranker had put each item
            position = {c.item_id: n for n, c in enumerate(ranked, start=1)}
            items = [i.model_copy(update={"ranker_rank": position[i.item_id]}) for i in items]
        items = mark_soft_matches(items, short, constraints)
        logs.extend(explain_logs)
        llm_used = any(r.used for r in logs)
        fallback = rerank_log.fallback_reason if rerank_log.called and not rerank_log.used else None
        response = RecResponse(
            request_id=request.request_id,
            user_id=request.user_id,
            items=items,
            route=decision.route,
            warmth_bucket=warmth,
            llm_used=llm_used,
            llm_fallback_reason=fallback,
            policy=cfg.name,
            model_version=model_version,
            prompt_version=prompt_version if rerank_log.used else None,
            llm_model=self.llm.model if llm_used else None,
            embedding_model=self.embedder.name if self.embedder is not None else None,
            latency_ms=(self.clock() - received) * 1000.0,
            eligible_count=short.passed if short is not None and short.reason else None,
            short_reason=short.reason if short is not None else None,
            **response_fields(decision, context),
        )
        logs = [
            r.model_copy(
                update={
                    **log_fields(decision),
                    "injection_flagged": r.injection_flagged or flagged,
                    "injection_reasons": list(dict.fromkeys([*r.injection_reasons, *reasons]))[:20],
                }
            )
            for r in logs
        ]
        timings["total"] = self.clock() - received
        return Served(response, logs, timings)

    # ---- steps ------------------------------------------------------------------------
    async def _intent(
        self, request: RecRequest, query: str | None, received: float
    ) -> tuple[Intent | None, LlmInvolvement | None]:
        if query is None:
            return None, None
        categories = list(await self._categories.get(self.items.categories))
        parser, gate = self.llm.intent, self.llm.gate
        reason = _off_reason(self.config.llm_intent, parser is not None)
        if reason is None and gate is not None:
            ok, why = gate.allow(_remaining_s(request, received, self.clock) - FINISH_RESERVE_S)
            reason = None if ok else why
        if reason is not None or parser is None:
            return parse_rules(query, categories), _not_called(
                request, LlmUseCase.INTENT, reason or "llm_off"
            )
        outcome = await parser.parse(
            query,
            categories,
            deadline_s=max(0.0, _remaining_s(request, received, self.clock) - FINISH_RESERVE_S),
        )
        if gate is not None:
            gate.record(outcome)
        return outcome.intent, outcome.involvement(
            request_id=request.request_id, use_case=LlmUseCase.INTENT, user_id=request.user_id
        )

    async def _candidates(
        self,
        action: Action,
        warmth: WarmthBucket,
        view: UserView,
        history: list[str],
        query: str | None,
        filters: ItemFilters | None,
        exclude: set[str],
        embedding: Awaitable[np.ndarray] | None = None,
    ) -> tuple[list[Candidate], str | None]:
        cfg = self.config
        n = cfg.candidate_pool
        route = action.route
        popular = await self.popular()
        model_version: str | None = None
        bucket = cfg.bucket_route(warmth)

        async def cf() -> list[Candidate]:
            if view.cf_profile is not None:
                recent = list(view.cf_profile)
            else:
                recent = list(view.recent) or [(i, 1.0) for i in history]
            return await cands.cf_candidates(self.cf, recent, n, exclude, bucket.cf_fold)

        async def content(popularity_weight: float) -> list[Candidate]:
            vector = await self._content_vector(query, history, embedding)
            if vector is None:
                return []
            return await cands.content_candidates(
                self.items,
                vector,
                n,
                filters=filters,
                exclude=exclude,
                popular=popular,
                popularity_weight=popularity_weight,
            )

        # the co-visitation list asks no model: no model version to report
        uses_model = bucket.cf_fold != "covisit"
        if route is Route.CF:
            ranked = await cf()
            model_version = await self.cf.model_version() if uses_model else None
        elif route is Route.CONTENT:
            ranked = await content(bucket.popularity_weight if history else cfg.popularity_weight)
        elif route is Route.HYBRID:
            assert action.fusion is not None  # a HYBRID action always has its weights
            fusion = action.fusion
            cf_list, content_list = await asyncio.gather(cf(), content(fusion.popularity_weight))
            ranked = cands.rrf(cf_list, content_list, weights=(1.0, fusion.content_weight))
            model_version = await self.cf.model_version() if uses_model else None
        else:
            ranked = []
        if len(ranked) < n:  # fill (or serve) from the popular head
            seen = {c.item_id for c in ranked}
            ranked += [
                Candidate(i, s, "popularity")
                for i, s in popular
                if i not in seen and i not in exclude
            ][: n - len(ranked)]
        return ranked, model_version

    async def _content_vector(
        self,
        query: str | None,
        history: Sequence[str],
        embedding: Awaitable[np.ndarray] | None = None,
    ) -> np.ndarray | None:
        if query is not None and self.embedder is not None:
            return await (embedding if embedding is not None else self.embedder.embed(query))
        if history:
            vectors = await self.items.vectors(list(history[:10]))
            return cands.profile_vector(list(history[:10]), vectors)
        return None

    async def _eligible(
        self, ranked: list[Candidate], filters: ItemFilters | None, exclude: set[str]
    ) -> list[Candidate]:
        ranked = [c for c in ranked if c.item_id not in exclude]
        ok = await self.items.eligible([c.item_id for c in ranked], filters)
        return [c for c in ranked if c.item_id in ok]

    async def _rerank(
        self,
        request: RecRequest,
        view: UserView,
        warmth: WarmthBucket,
        decision: Decision,
        screened: tuple[str | None, bool, tuple[str, ...]],
        history: list[str],
        ranked: list[Candidate],
        details: dict[str, ItemRecord],
        received: float,
    ) -> tuple[list[str], LlmInvolvement, str | None]:
        """The order after the LLM rerank (or the ranker's, with the reason it was not).

        The query was screened before everything (intent, retrieval, prompts) so that
        flagged text steers nothing, whether or not an LLM is involved; a flagged query
        also lets no LLM decision move any item up (the reranker then skips the call).
        """
        query, query_flagged, query_reasons = screened
        order = [c.item_id for c in ranked]
        reranker, gate = self.llm.reranker, self.llm.gate
        bound = reranker.max_displacement if reranker is not None else None
        reason = _off_reason(self.config.llm_rerank, reranker is not None)
        if reason is None and not decision.action.rerank:
            reason = "not_eligible"  # the policy did not choose the rerank for this request
        if reason is None and len(ranked) < 2:
            reason = "too_few_candidates"
        if reason is None and gate is not None:
            ok, why = gate.allow(_remaining_s(request, received, self.clock) - FINISH_RESERVE_S)
            reason = None if ok else why
        if reason is not None or reranker is None:
            record = _not_called(request, LlmUseCase.RERANK, reason or "llm_off")
            return order, record.model_copy(update={"max_displacement": bound}), None
        cap = min(self.config.rerank_cap, len(ranked))
        pool = [
            RerankCandidate(
                item_id=c.item_id,
                title=details[c.item_id].title if c.item_id in details else c.item_id,
                categories=tuple(details[c.item_id].categories) if c.item_id in details else (),
                description=details[c.item_id].description if c.item_id in details else "",
                score=c.score,
            )
            for c in ranked[:cap]
        ]
        context = RerankContext(
            user_id=request.user_id,
            query=query,
            history=[
                (details[i].title, tuple(details[i].categories))
                for i in history[: self.config.history_max]
                if i in details
            ],
            query_flagged=query_flagged,
            query_reasons=query_reasons,
        )
        outcome = await reranker.rerank(
            context,
            pool,
            deadline_s=max(0.0, _remaining_s(request, received, self.clock) - FINISH_RESERVE_S),
        )
        if gate is not None:
            gate.record(outcome)
        record = outcome.involvement(
            request_id=request.request_id, use_case=LlmUseCase.RERANK, user_id=request.user_id
        )
        if outcome.used:
            head = [i for i in outcome.order if i in set(order[:cap])]
            order = head + [i for i in order if i not in set(head)]
        return order, record, outcome.prompt_version

    async def _explain(
        self,
        request: RecRequest,
        final: list[Candidate],
        history: list[str],
        details: dict[str, ItemRecord],
        intent: Intent | None,
        received: float,
        stated: Callable[[ItemRecord | None], list[Evidence]] | None = None,
        read: tuple[set[str], dict[str, np.ndarray]] = (set(), {}),
    ) -> tuple[list[RecommendedItem], list[LlmInvolvement]]:
        missing = [c.item_id for c in final if c.item_id not in details]
        if missing:
            details = details | await self.items.details(missing)
        asked, found = read  # vectors already read (of ``asked``: ``found``)
        need = list(dict.fromkeys([c.item_id for c in final] + history[:10]))
        extra = [i for i in need if i not in asked]
        more = await self.items.vectors(extra) if extra else {}
        vectors = {i: v for i in need if (v := found.get(i, more.get(i))) is not None}
        grounds = Grounds(
            recent=history,
            details=details,
            vectors=vectors,
            query_categories=(
                [*intent.categories_any, *([intent.category] if intent.category else [])]
                if intent is not None
                else []
            ),
            year_range=(intent.year_min, intent.year_max) if intent is not None else (None, None),
            stated=stated,
        )
        out: list[RecommendedItem] = []
        logs: list[LlmInvolvement] = []
        explainer, gate = self.llm.explainer, self.llm.gate
        for rank, cand in enumerate(final, start=1):
            evidence = evidence_for(cand, grounds)
            text, source = template_sentence(evidence), ExplanationSource.TEMPLATE
            if self.config.llm_explain and explainer is not None and rank <= 3:
                allowed = (
                    gate is None
                    or gate.allow(_remaining_s(request, received, self.clock) - FINISH_RESERVE_S)[0]
                )
                if allowed:
                    title = details[cand.item_id].title if cand.item_id in details else cand.item_id
                    outcome = await explainer.word(
                        title,
                        evidence_texts(evidence),
                        deadline_s=max(
                            0.0, _remaining_s(request, received, self.clock) - FINISH_RESERVE_S
                        ),
                    )
                    if gate is not None:
                        gate.record(outcome)
                    logs.append(
                        outcome.involvement(
                            request_id=request.request_id,
                            use_case=LlmUseCase.EXPLAIN,
                            user_id=request.user_id,
                            item_id=cand.item_id,
                        )
                    )
                    if outcome.used and outcome.text:
                        text, source = outcome.text, ExplanationSource.LLM
            out.append(
                RecommendedItem(
                    item_id=cand.item_id,
                    rank=rank,
                    score=float(cand.score),
                    source=cand.source,
                    explanation=text,
                    explanation_source=source,
                    evidence=evidence,
                )
            )
        return out, logs


def _settle(future: asyncio.Future[Any]) -> None:
    """Cancel ``future`` if it is still running; retrieve its error if it failed
    unawaited (a route that needed no query vector), so that nothing is logged."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


def _off_reason(enabled: bool, available: bool) -> str | None:
    if not enabled:
        return "disabled"
    if not available:
        return "llm_off"
    return None


def _not_called(request: RecRequest, use_case: LlmUseCase, reason: str) -> LlmInvolvement:
    return LlmInvolvement(
        request_id=request.request_id,
        user_id=request.user_id,
        use_case=use_case,
        called=False,
        used=False,
        decision=reason,
        fallback=True,
        fallback_reason=reason,
    )
