"""One conversation turn end to end, over the serving recommender.

1. Load the conversation's stored turns. A turn already stored is answered with its
   stored response and LLM-log records, unchanged (a redelivery after a crash, or a
   client repeating itself) — nothing is read, asked or written again.
2. Screen the turn's text like a query (instruction-like spans removed, PII redacted
   before it is stored or quoted), and read it: the LLM with a schema, the rules as the
   fallback (:class:`~recsys.dialogue.llm_reading.TurnReader`; one ``rec.llm-log``
   record, use case DIALOGUE). Titles the user names are resolved in the catalog.
3. Fold the turn into the state, gather the candidates that satisfy what is known
   (content retrieval on the conversation's summary, CF on the user's history when
   warm or warming, the popular head otherwise), and let the policy ask or recommend.
4. Recommend through :meth:`Recommender.recommend` with a :class:`Steer`: the summary
   as the query, the preferences as intent and filters, the stated preferences each
   item satisfies first in its evidence.
5. Store the turn with its answer (first writer wins), then return it for emission.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from recsys.dialogue.attributes import labels
from recsys.dialogue.grounding import stated_for
from recsys.dialogue.llm_reading import TurnReader
from recsys.dialogue.policy import Decision, PolicyConfig, decide
from recsys.dialogue.reading import normalise, reading_of
from recsys.dialogue.signals import DialogueState, Signal, StoredTurn
from recsys.dialogue.store import ConversationStore, TurnRow
from recsys.items.model import ItemRecord
from recsys.records import (
    DialogueAction,
    DialogueReply,
    LlmUseCase,
    RecRequest,
    RecResponse,
    Route,
    SignalKind,
    WarmthBucket,
)
from recsys.serving import candidates as cands
from recsys.serving.config import warmth_of
from recsys.serving.pii import redact
from recsys.serving.ports import UserView
from recsys.serving.recommender import Recommender, Served
from recsys.serving.steer import Steer
from recsys.users.state import Position

__all__ = ["Dialogue", "DialogueConfig"]

#: Time kept back from the deadline for everything after reading the turn.
READ_RESERVE_S = 0.25


@dataclass(frozen=True)
class DialogueConfig:
    """The policy's bounds and how many candidates it looks at."""

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    pool: int = 200


class Dialogue:
    """Answers conversation turns; one instance per serve worker process."""

    def __init__(
        self,
        recommender: Recommender,
        store: ConversationStore,
        reader: TurnReader,
        config: DialogueConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rec, self.store, self.reader = recommender, store, reader
        self.config = config or DialogueConfig()
        self.clock = clock
        self._categories: tuple[float, list[str]] = (-1e18, [])
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def categories(self) -> list[str]:
        """The catalog's categories (refreshed every 30 s)."""
        at, value = self._categories
        if self.clock() - at > 30.0:
            value = await self.rec.items.categories()
            self._categories = (self.clock(), value)
        return value

    async def serve(
        self,
        request: RecRequest,
        *,
        received: float | None = None,
        position: Position | None = None,
    ) -> Served:
        """Answer one turn of ``request.conversation``.

        Turns of one conversation are answered one at a time (a batch may hold a turn
        and its redelivery); each reads the turns stored before it.
        """
        conv = request.conversation
        if conv is None:
            raise ValueError("not a conversation turn")
        received = self.clock() if received is None else received
        key = (request.user_id, conv.conversation_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            return await self._serve(request, received, position)

    async def _serve(
        self, request: RecRequest, received: float, position: Position | None
    ) -> Served:
        conv = request.conversation
        assert conv is not None
        rows = await self.store.load(request.user_id, conv.conversation_id)
        done = next((r for r in rows if r.turn.turn == conv.turn), None)
        if done is not None:
            return _again(done, request)
        state = DialogueState(
            request.user_id, conv.conversation_id, [r.turn for r in rows if r.turn.turn < conv.turn]
        )
        last = next((r for r in reversed(rows) if r.turn.turn < conv.turn), None)
        pending = state.pending
        options = (
            list(last.response.conversation.options) if last and last.response.conversation else []
        )
        view = await self.rec.users.view(request.user_id)
        warmth = warmth_of(view.positives, self.rec.config)
        kept, flagged, reasons = await self.rec.sanitiser.screen_query(conv.text)
        text = kept or ""
        categories = await self.categories()
        left = self._left(request, received) - READ_RESERVE_S
        gate, skip = self.rec.llm.gate, None
        if gate is not None and self.reader.client is not None:
            ok, why = gate.allow(left)
            skip = None if ok else why
        outcome = await self.reader.read(
            conv.text, categories, pending=pending, options=options, deadline_s=left, skip=skip
        )
        if gate is not None:
            gate.record(outcome)
        parse, parser = outcome.parse, outcome.source
        turn_log = outcome.involvement(
            request_id=request.request_id, use_case=LlmUseCase.DIALOGUE, user_id=request.user_id
        )
        reading = reading_of(parse, conv.turn, pending=pending, options=options)
        signals, liked = await self._resolve(reading.signals)
        turn = StoredTurn(
            turn=conv.turn,
            request_id=request.request_id,
            text=redact(text).text,
            signals=signals,
            settled=reading.settled,
            show_now=reading.show_now or conv.show_now,
            action=DialogueAction.RECOMMEND,
            flagged=flagged,
            parser=parser,
        )
        state = state.with_turn(turn)
        exclude = set(request.exclude_item_ids) | set(view.consumed) | set(state.named_items())
        pool, route = await self._pool(state, view, warmth, exclude)
        state, pool = _harden(state, turn, pool)
        decision = decide(state, warmth, pool, k=request.k, config=self.config.policy)
        turn = state.stored(conv.turn) or turn
        if decision.action is DialogueAction.QUESTION:
            served = self._question(request, decision, state, pool, route, warmth, parser, received)
            turn = turn.model_copy(
                update={"action": DialogueAction.QUESTION, "asked": decision.split.attribute}
                if decision.split
                else {}
            )
        else:
            served = await self._recommend(
                request, decision, state, liked, parser, received, reasons, len(pool)
            )
        logs = [turn_log, *served.logs]
        logs = [
            r.model_copy(
                update={
                    "injection_flagged": r.injection_flagged or flagged,
                    "injection_reasons": list(dict.fromkeys([*r.injection_reasons, *reasons]))[:20],
                }
            )
            for r in logs
        ]
        if turn_log.used:
            served = Served(
                served.response.model_copy(
                    update={
                        "llm_used": True,
                        "llm_model": served.response.llm_model or turn_log.model,
                    }
                ),
                served.logs,
                served.timings,
            )
        row = TurnRow(request.user_id, conv.conversation_id, turn, served.response, logs, position)
        if not await self.store.put(row):  # another process answered this turn first
            stored = await self.store.load(request.user_id, conv.conversation_id)
            done = next((r for r in stored if r.turn.turn == conv.turn), None)
            if done is not None:
                return _again(done, request)
        return Served(served.response, logs, served.timings)

    # ---- steps -------------------------------------------------------------------------
    def _left(self, request: RecRequest, received: float) -> float:
        return request.deadline_ms / 1000.0 - (self.clock() - received)

    async def _resolve(
        self, signals: Sequence[Signal]
    ) -> tuple[list[Signal], dict[str, ItemRecord]]:
        """Named titles resolved to catalog items where a close title exists."""
        out: list[Signal] = []
        liked: dict[str, ItemRecord] = {}
        for signal in signals:
            if signal.kind not in (SignalKind.LIKED_ITEM, SignalKind.DISLIKED_ITEM):
                out.append(signal)
                continue
            item = await self._find_title(signal.value)
            if item is None:
                out.append(signal)
                continue
            out.append(signal.model_copy(update={"item_id": item.item_id, "value": item.title}))
            liked[item.item_id] = item
        return out, liked

    async def _find_title(self, phrase: str) -> ItemRecord | None:
        embedder = self.rec.embedder
        words = set(normalise(phrase).split())
        if embedder is None or not words:
            return None
        near = await self.rec.items.knn(await embedder.embed(phrase), 5)
        found = await self.rec.items.details([i for i, _ in near])
        for item_id, _ in near:
            item = found.get(item_id)
            title_words = set(normalise(item.title).split()) if item is not None else set()
            if item is not None and words <= title_words:
                return item
        return None

    async def _pool(
        self, state: DialogueState, view: UserView, warmth: WarmthBucket, exclude: set[str]
    ) -> tuple[list[ItemRecord], Route]:
        """Eligible candidates for what the conversation knows, best first."""
        rec, n = self.rec, self.config.pool
        filters = state.filters()
        summary = state.summary()
        popular = await rec.popular()
        lists: list[list[cands.Candidate]] = []
        history = [*view.session_items, *view.recent_items]
        vector = None
        if summary is not None and rec.embedder is not None:
            vector = await rec.embedder.embed(summary)
        elif history:
            vectors = await rec.items.vectors(history[:10])
            vector = cands.profile_vector(history[:10], vectors)
        if vector is not None:
            lists.append(
                await cands.content_candidates(
                    rec.items,
                    vector,
                    n,
                    filters=filters,
                    exclude=exclude,
                    popular=popular,
                    popularity_weight=rec.config.popularity_weight,
                )
            )
        if warmth is not WarmthBucket.COLD and view.recent:
            lists.append(await cands.cf_candidates(rec.cf, list(view.recent), n, exclude))
        route = Route.HYBRID if len(lists) == 2 else Route.CONTENT if lists else Route.POPULARITY
        if not lists:
            lists.append(
                [cands.Candidate(i, s, "popularity") for i, s in popular if i not in exclude]
            )
        ranked = cands.rrf(*lists) if len(lists) > 1 else lists[0]
        ids = [c.item_id for c in ranked if c.item_id not in exclude]
        ok = await rec.items.eligible(ids, filters)
        ids = [i for i in ids if i in ok][:n]
        details = await rec.items.details(ids)
        return [details[i] for i in ids if i in details], route

    def _question(
        self,
        request: RecRequest,
        decision: Decision,
        state: DialogueState,
        pool: Sequence[ItemRecord],
        route: Route,
        warmth: WarmthBucket,
        parser: str,
        received: float,
    ) -> Served:
        assert decision.split is not None and request.conversation is not None
        reply = DialogueReply(
            conversation_id=request.conversation.conversation_id,
            turn=request.conversation.turn,
            action=DialogueAction.QUESTION,
            question=decision.question,
            attribute=decision.split.attribute,
            options=decision.split.options,
            candidates=len(pool),
            signals=[s.wire() for s in state.signals],
            reason=decision.reason,
            parser=parser,
        )
        response = RecResponse(
            request_id=request.request_id,
            user_id=request.user_id,
            items=[],
            route=route,
            warmth_bucket=warmth,
            propensity=1.0,
            llm_used=False,
            policy=self.rec.config.name,
            policy_version=self.rec.policy.version,
            embedding_model=self.rec.embedder.name if self.rec.embedder is not None else None,
            latency_ms=(self.clock() - received) * 1000.0,
            conversation=reply,
        )
        return Served(response, [], {"total": self.clock() - received})

    async def _recommend(
        self,
        request: RecRequest,
        decision: Decision,
        state: DialogueState,
        liked: dict[str, ItemRecord],
        parser: str,
        received: float,
        reasons: tuple[str, ...],
        matching: int,
    ) -> Served:
        assert request.conversation is not None
        signals = state.signals
        steer = Steer(
            query=state.summary(),
            intent=state.intent(),
            filters=state.filters(),
            stated=stated_for(signals, liked),
            flagged=state.flagged,
            reasons=reasons,
        )
        plain = request.model_copy(
            update={
                "query": None,
                "exclude_item_ids": [*request.exclude_item_ids, *state.named_items()],
            }
        )
        served = await self.rec.recommend(plain, received=received, steer=steer)
        reply = DialogueReply(
            conversation_id=request.conversation.conversation_id,
            turn=request.conversation.turn,
            action=DialogueAction.RECOMMEND,
            candidates=matching,
            signals=[s.wire() for s in signals],
            reason=decision.reason,
            parser=parser,
        )
        response = served.response.model_copy(update={"conversation": reply})
        return Served(response, served.logs, served.timings)


def _harden(
    state: DialogueState, turn: StoredTurn, pool: list[ItemRecord]
) -> tuple[DialogueState, list[ItemRecord]]:
    """A mood the catalog stores as an attribute becomes a filter (the pool narrows)."""
    soft = [s for s in turn.signals if s.kind is SignalKind.MOOD and not s.hard]
    if not soft or not pool:
        return state, pool
    stored = [i for i in pool if i.attributes.get("mood")]
    if len(stored) * 2 < len(pool):
        return state, pool
    hardened = []
    for s in turn.signals:
        if s in soft:
            s = s.model_copy(update={"hard": True, "match": s.value})
        hardened.append(s)
    turn = turn.model_copy(update={"signals": hardened})
    state = state.with_turn(turn)
    moods = {s.value for s in hardened if s.kind is SignalKind.MOOD}
    return state, [i for i in pool if moods <= set(labels("mood", i))]


def _again(done: TurnRow, request: RecRequest) -> Served:
    """A stored turn's answer, for a redelivery (same request) or a repeat (another id)."""
    if done.turn.request_id == request.request_id:
        return Served(done.response, done.logs, {})
    reply = done.response.conversation
    update: dict[str, Any] = {"request_id": request.request_id}
    if reply is not None:
        update["conversation"] = reply.model_copy(update={"reason": "repeated_turn"})
    return Served(done.response.model_copy(update=update), [], {})
