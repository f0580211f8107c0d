"""LLM rerank of the ranker's top candidates, with every guardrail and a safe fallback.

:meth:`LlmReranker.rerank` takes at most ``cap`` candidates in the ranker's order and
asks the model to reorder them:

* the prompt is versioned (:attr:`LlmReranker.prompt_version`) and tells the model
  that quoted text is data, never instructions;
* the user's query and history (newest first, at most ``history_max``) and each
  candidate's title, categories and description go through the
  :class:`~recsys.serving.untrusted.Sanitiser` (PII redacted, guard-flagged sentences
  dropped, encoded payloads masked, invisible characters removed, keyword stuffing
  capped, instruction-likeness scored) and are quoted as JSON data; candidate ids named
  in that text are masked (``[item]``), and so are candidate titles named in
  descriptions and categories — language-independent layers behind the guard;
* candidates are addressed by *position*: the model sees them in a per-request shuffled
  list numbered ``n`` = 1…N (with the ranker's rank as ``prior_rank``), never their ids,
  and answers the numbers in its order. An id or title an attacker writes cannot be
  mapped to an answer, and a number cannot be predicted;
* the answer is structured output whose JSON schema enumerates the numbers shown;
  temperature comes from the client (at most 0.3);
* the answer is validated — numbers ⊂ those shown, no duplicates, not empty — and any
  failure (transport, timeout, 429/5xx, malformed JSON, hallucinated or duplicate
  numbers, an empty ranking) serves the ranker's order and says why in
  ``fallback_reason``;
* a valid answer moves no item further than the *displacement bound*
  (:mod:`recsys.serving.bounded`): ``max_displacement`` places relative to what any
  other answer would give, half of it relative to the ranker's order; an item whose text
  was flagged by any layer may not move up more than ``flagged_displacement`` (0: not at
  all), and neither may any item when the query or history was flagged (the call is then
  skipped). The bound is reported on ``rec.llm-log``;
* validated answers are cached by (user context hash, candidate ids and text, prompt
  version, model): a hit makes no call.

``prompt_style="compact"`` (small local models) tells the same protocol shorter
(:mod:`recsys.serving.rerank_compact`): at most 20 candidates with short descriptions,
one worked example, and a ranking of the best few; every guardrail above is unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recsys.llm.client import LlmClient
from recsys.llm.prompts import PromptStyle, quote_untrusted
from recsys.records import ValidationResult
from recsys.serving.bounded import bounded_order, split_bound
from recsys.serving.guard import InjectionGuard
from recsys.serving.mentions import ID_MASK, MentionMask
from recsys.serving.outcome import LlmAccounting, accounting_from
from recsys.serving.rerank_compact import (
    COMPACT_CAP,
    COMPACT_DESCRIPTION_CHARS,
    COMPACT_HISTORY,
    rerank_prompt_compact,
    rerank_schema_compact,
)
from recsys.serving.rerank_prompt import (
    RERANK_SCHEMA_NAME,
    rerank_prompt,
    rerank_schema,
    validate_ranking,
)
from recsys.serving.untrusted import Sanitised, Sanitiser

__all__ = [
    "DEFAULT_MAX_DISPLACEMENT",
    "ID_MASK",
    "RERANK_SCHEMA_NAME",
    "Candidate",
    "LlmReranker",
    "RerankContext",
    "RerankOutcome",
    "rerank_prompt",
    "rerank_schema",
]

#: The displacement bound of :class:`LlmReranker` unless told otherwise.
DEFAULT_MAX_DISPLACEMENT = 10


@dataclass(frozen=True)
class Candidate:
    """One item the ranker proposes, with the text the LLM may see."""

    item_id: str
    title: str
    categories: tuple[str, ...] = ()
    description: str = ""
    score: float = 0.0


@dataclass(frozen=True)
class RerankContext:
    """Who asks: the user, their query, and their history (title, categories) newest first.

    ``query_flagged`` says the query was already screened and something in it flagged
    (``query_reasons`` why): the query then steers no LLM movement at all.
    """

    user_id: str
    query: str | None = None
    history: Sequence[tuple[str, tuple[str, ...]]] = ()
    query_flagged: bool = False
    query_reasons: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RerankOutcome(LlmAccounting):
    """The final order of every candidate given, and what the LLM did."""

    order: list[str]
    hallucinated_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Prepared:
    user_block: str
    candidates_block: str
    #: candidate ids in the order the prompt lists them (position n = index + 1)
    listed: list[str]
    flagged: bool
    #: the query or the history was flagged: no item may move up beyond the clamp
    context_flagged: bool
    #: candidates whose own text was flagged
    flagged_items: set[str]
    reasons: list[str]
    key: tuple[str, tuple[str, ...], str, str, str]


class LlmReranker:
    """Reranks the head of a candidate list through an :class:`LlmClient`.

    Args:
        client: the LLM.
        cap: candidates the LLM sees (the ranker's head).
        history_max: history items quoted, newest first.
        cache_size: validated answers kept.
        guard: the injection guard (used when no ``sanitiser`` is given).
        description_chars: description characters quoted per candidate.
        mask_ids: mask candidate ids named in free text.
        mask_titles: mask candidate titles named in descriptions and categories.
        sanitiser: cleans and scores untrusted text (shared with intent and serving).
        max_displacement: places an answer may move an item relative to any other
            answer (half of it relative to the ranker's order); None = unbounded.
        flagged_displacement: places a flagged item may move up (≤ the bound's half).
        weight: blend of the LLM's order (1) with the ranker's (0) within the bound.
        rng: shuffles the listed candidates (a fresh system-seeded one by default).
        scoring_budget_s: the longest a request waits for instruction scores of text
            never seen before (None: until scored; see :meth:`Sanitiser.screen`).
        prompt_style: ``compact`` for small local models: fewer candidates and history
            items, shorter descriptions, a worked example, the best few ranked.
    """

    def __init__(
        self,
        client: LlmClient,
        *,
        cap: int = 30,
        history_max: int = 10,
        cache_size: int = 10_000,
        guard: InjectionGuard | None = None,
        description_chars: int = 300,
        mask_ids: bool = True,
        mask_titles: bool = True,
        sanitiser: Sanitiser | None = None,
        max_displacement: int | None = DEFAULT_MAX_DISPLACEMENT,
        flagged_displacement: int = 0,
        weight: float = 1.0,
        rng: random.Random | None = None,
        scoring_budget_s: float | None = None,
        prompt_style: PromptStyle = "standard",
    ) -> None:
        if cap < 1:
            raise ValueError("the rerank cap must be at least 1")
        if max_displacement is not None and max_displacement < 0:
            raise ValueError("the displacement bound is at least 0")
        if flagged_displacement < 0 or not 0.0 <= weight <= 1.0:
            raise ValueError("flagged_displacement >= 0 and 0 <= weight <= 1")
        self.client = client
        self.compact = prompt_style == "compact"
        # the compact prompt shows a small model fewer candidates, with shorter texts
        self.cap = min(cap, COMPACT_CAP) if self.compact else cap
        self.history_max = min(history_max, COMPACT_HISTORY) if self.compact else history_max
        self.cache_size = cache_size
        self.sanitiser = sanitiser or Sanitiser(guard)
        self.guard = self.sanitiser.guard
        self.description_chars = (
            min(description_chars, COMPACT_DESCRIPTION_CHARS) if self.compact else description_chars
        )
        self.mask_ids = mask_ids
        self.mask_titles = mask_titles
        self.max_displacement = max_displacement
        self.flagged_displacement = flagged_displacement
        self.weight = weight
        self.rng = rng or random.Random()
        self.scoring_budget_s = scoring_budget_s
        self._category_ok: dict[str, bool] = {}
        self.prompt = rerank_prompt_compact() if self.compact else rerank_prompt()
        self._cache: OrderedDict[tuple[str, ...] | tuple[Any, ...], list[str]] = OrderedDict()

    @property
    def prompt_version(self) -> str:
        """Version of the rerank prompt (template + schema shape)."""
        return self.prompt.version

    @property
    def cache_len(self) -> int:
        """Entries in the response cache."""
        return len(self._cache)

    # ---- prompt -----------------------------------------------------------------------
    def _categories(self, categories: Sequence[str]) -> tuple[list[str], bool]:
        """Categories fit for the prompt (flagged ones dropped; verdicts remembered, since
        a catalog has few distinct categories), and whether any was dropped."""
        kept: list[str] = []
        flagged = False
        for category in categories:
            ok = self._category_ok.get(category)
            if ok is None:
                ok = not self.sanitiser.clean(category, 60).flagged and len(category) <= 60
                if len(self._category_ok) >= 10_000:
                    self._category_ok.clear()
                self._category_ok[category] = ok
            if ok:
                kept.append(category)
            else:
                flagged = True
        return kept, flagged

    async def _prepare(self, ctx: RerankContext, head: Sequence[Candidate]) -> _Prepared:
        history_in = list(ctx.history)[: self.history_max]
        texts: list[tuple[str | None, int]] = [(title, 200) for title, _ in history_in]
        for c in head:
            texts += [(c.title, 200), (c.description, self.description_chars)]
        # the query is the user's text, the rest catalog text (whose scores are shared)
        asked, catalog = await asyncio.gather(
            self.sanitiser.screen([(ctx.query, 500)], self.scoring_budget_s),
            self.sanitiser.screen(texts, self.scoring_budget_s, catalog=True),
        )
        done = [*asked, *catalog]
        reasons: list[str] = list(ctx.query_reasons)
        for d in done:
            reasons.extend(r for r in d.reasons if r not in reasons)
        ids = [c.item_id for c in head]
        mask = MentionMask(
            ids if self.mask_ids else [], [c.title for c in head] if self.mask_titles else []
        )

        def free(d: Sanitised) -> str:
            return mask.ids(d.text)

        def described(d: Sanitised) -> str:
            return mask.titles(mask.ids(d.text))

        query, history_done, rest = (
            done[0],
            done[1 : 1 + len(history_in)],
            done[1 + len(history_in) :],
        )
        context_flagged = ctx.query_flagged or query.flagged
        history = []
        for (_, categories), d in zip(history_in, history_done, strict=True):
            cats, hit_cats = self._categories(categories)
            context_flagged |= d.flagged or hit_cats
            history.append({"title": free(d), "categories": cats})
        items = []
        flagged_items: set[str] = set()
        for k, c in enumerate(head):
            name, about = rest[2 * k], rest[2 * k + 1]
            cats, hit_cats = self._categories(c.categories)
            if name.flagged or about.flagged or hit_cats:
                flagged_items.add(c.item_id)
            items.append(
                {
                    "title": free(name),
                    "categories": [mask.titles(x) for x in cats],
                    "description": described(about),
                }
            )
        user_data: dict[str, Any] = {"query": free(query) or None, "recent_items": history}
        user_block = quote_untrusted("USER", user_data)
        canonical = quote_untrusted(
            "CANDIDATES", [{"id": i, **x} for i, x in zip(ids, items, strict=True)]
        )
        order = list(range(len(head)))
        self.rng.shuffle(order)
        listed = [{"n": n, "prior_rank": k + 1, **items[k]} for n, k in enumerate(order, start=1)]
        candidates_block = quote_untrusted("CANDIDATES", listed)
        key = (
            _digest(user_block),
            tuple(ids),
            _digest(canonical),
            self.prompt_version,
            self.client.model,
        )
        flagged = context_flagged or bool(flagged_items)
        if flagged and not reasons:
            reasons.append("category")
        return _Prepared(
            user_block,
            candidates_block,
            [ids[k] for k in order],
            flagged,
            context_flagged,
            flagged_items,
            reasons,
            key,
        )

    # ---- the bound --------------------------------------------------------------------
    def _bounds(
        self, prepared: _Prepared, ids: Sequence[str]
    ) -> tuple[int | None, int | None, dict[str, int]]:
        """(up, down, smaller up per flagged item) for this request."""
        if self.max_displacement is None:
            up: int | None = None
            down: int | None = None
        else:
            up, down = split_bound(self.max_displacement)
        clamp = self.flagged_displacement if up is None else min(self.flagged_displacement, up)
        targets = ids if prepared.context_flagged else prepared.flagged_items
        return up, down, {i: clamp for i in targets}

    def _order(
        self,
        preference: Sequence[str],
        ranker: list[str],
        head: list[str],
        bounds: tuple[int | None, int | None, dict[str, int]],
    ) -> tuple[list[str], int]:
        up, down, up_for = bounds
        bounded = bounded_order(
            head, preference, up=up, down=down, up_for=up_for, weight=self.weight
        )
        return _complete(bounded.order, ranker), bounded.moved_max

    # ---- the call ---------------------------------------------------------------------
    async def rerank(
        self, ctx: RerankContext, candidates: Sequence[Candidate], *, deadline_s: float
    ) -> RerankOutcome:
        """The final order of ``candidates``; never raises for an LLM problem.

        Args:
            ctx: the user, query and history.
            candidates: in the ranker's order; only the first ``cap`` go to the LLM.
            deadline_s: seconds from now by which the call, retries included, must end.
        """
        deadline = time.monotonic() + deadline_s  # preparing the texts spends it too
        ranker = [c.item_id for c in candidates]
        head = list(candidates[: self.cap])
        ids = [c.item_id for c in head]
        version = self.prompt_version
        base: dict[str, Any] = {
            "prompt_version": version,
            "model": self.client.model,
            "max_displacement": self.max_displacement,
        }
        if len(head) < 2:
            return RerankOutcome(order=ranker, fallback_reason="too_few_candidates", **base)
        if len(set(ids)) != len(head):
            return RerankOutcome(order=ranker, fallback_reason="duplicate_candidates", **base)
        prepared = await self._prepare(ctx, head)
        bounds = self._bounds(prepared, ids)
        base["injection_flagged"] = prepared.flagged
        base["injection_reasons"] = prepared.reasons
        base["clamped_items"] = len(bounds[2])
        up, down, clamped = bounds
        if up == 0 or down == 0:  # one side 0 leaves no room: nothing can move
            return RerankOutcome(order=ranker, fallback_reason="displacement_zero", **base)
        if len(clamped) == len(ids) and max(clamped.values()) == 0:
            why = "injection_flagged"
            return RerankOutcome(order=ranker, fallback_reason=why, **base)
        cached = self._cache.get(prepared.key)
        if cached is not None:
            self._cache.move_to_end(prepared.key)
            order, moved = self._order(cached, ranker, ids, bounds)
            return RerankOutcome(
                order=order,
                used=True,
                cache_hit=True,
                validation=ValidationResult.VALID,
                moved_max=moved,
                **base,
            )
        if deadline - time.monotonic() <= 0.01:
            return RerankOutcome(order=ranker, fallback_reason="deadline", **base)
        messages = self.prompt.render(
            user=prepared.user_block, candidates=prepared.candidates_block
        )
        result = await self.client.complete(
            messages,
            schema_name=RERANK_SCHEMA_NAME,
            schema=(rerank_schema_compact if self.compact else rerank_schema)(len(head)),
            deadline=deadline,
        )
        base |= accounting_from(result)
        if not result.ok or result.value is None:
            invalid = result.validated is False
            return RerankOutcome(
                order=ranker,
                validation=ValidationResult.INVALID if invalid else ValidationResult.NOT_RUN,
                errors=list(result.validation_errors) or ([result.detail] if result.detail else []),
                fallback_reason=result.reason or "unknown",
                **base,
            )
        positions, reason, errors, hallucinated = validate_ranking(result.value, len(head))
        if reason is not None:
            return RerankOutcome(
                order=ranker,
                validation=ValidationResult.INVALID,
                errors=errors,
                hallucinated_ids=hallucinated,
                fallback_reason=reason,
                **base,
            )
        preference = [prepared.listed[p - 1] for p in positions]
        self._remember(prepared.key, preference)
        order, moved = self._order(preference, ranker, ids, bounds)
        return RerankOutcome(
            order=order,
            used=True,
            validation=ValidationResult.VALID,
            moved_max=moved,
            **base,
        )

    def _remember(self, key: tuple[Any, ...], ranked: list[str]) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = ranked
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _complete(ranked: Sequence[str], ranker: Sequence[str]) -> list[str]:
    """``ranked`` first, then every other id in the ranker's order."""
    seen = set(ranked)
    return [*ranked, *(i for i in ranker if i not in seen)]
