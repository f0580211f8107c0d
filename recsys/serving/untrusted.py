"""Turning untrusted text (queries, history titles, item text) into prompt data.

Every such text passes through the same steps before it is quoted into a prompt
(:meth:`Sanitiser.clean`, memoised per text, so catalog text is cleaned once per process):

1. PII redaction (:mod:`recsys.serving.pii`) — first, so nothing below can leak PII;
2. the injection guard (:mod:`recsys.serving.guard`) on the text as written — rules on
   its normalised form, then on its look-alike/leet/misspelled readings and on every
   encoded payload it holds;
3. encoded payloads replaced by ``[encoded]`` (:func:`recsys.textsafety.encodings.mask_encoded`)
   and the text reduced to what a reader sees (NFKC, invisible characters removed), so no
   payload reaches a model, flagged or not;
4. instruction-like sentences the guard flags dropped (:meth:`InjectionGuard.neutralise`);
5. keyword stuffing capped (:func:`recsys.textsafety.stuffing.destuff`) — a text that
   loses a quarter of its content words to the cap is flagged ``stuffing``;
6. the result cut to ``max_chars``.

:meth:`Sanitiser.screen` adds the instruction-likeness score of
:class:`~recsys.textsafety.instruction.InstructionScorer` (on the PII-redacted visible
text and the decoded payloads), when the sanitiser has a scorer; a text scoring at or
above its threshold is flagged ``instruction``. What a caller does with a flag is its
business: the reranker lets no LLM decision move a flagged item up;
:meth:`Sanitiser.screen_query` drops the query sentences the guard flags and lets no LLM
act on a query anything flagged.
Callers record whether anything was flagged (``injection_flagged`` on ``rec.llm-log``)
and why (``injection_reasons``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from recsys.serving.guard import REMOVED, InjectionGuard
from recsys.serving.pii import redact
from recsys.textsafety.encodings import ENCODED, decoded_texts, mask_encoded
from recsys.textsafety.instruction import InstructionScorer, sentences
from recsys.textsafety.normalise import visible_text
from recsys.textsafety.stuffing import STUFFED_RATIO, destuff, stuffing_ratio

__all__ = ["Sanitised", "Sanitiser", "embeddable", "sanitise", "scoring_texts"]

log = logging.getLogger(__name__)

#: Content words a stuffed text must lose to the cap before it is flagged.
_STUFFED_MIN_WORDS = 3


@dataclass(frozen=True)
class Sanitised:
    """Text fit to be quoted as data, and what was done to it.

    ``scoring`` is what the instruction scorer reads (the visible text and the decoded
    payloads, one per line); ``score`` is its score once screened (None before).
    """

    text: str
    flagged: bool = False
    reasons: tuple[str, ...] = ()
    pii: int = 0
    scoring: str = ""
    score: float | None = None


def _clean(text: str, guard: InjectionGuard, max_chars: int, stuffing: bool) -> Sanitised:
    redacted = redact(text)
    verdict = guard.scan(redacted.text)
    reasons = list(verdict.reasons)
    visible = visible_text(mask_encoded(redacted.text))
    payloads = [decoded for _, decoded in decoded_texts(redacted.text)]
    scoring = "\n".join([visible_text(redacted.text), *(visible_text(p) for p in payloads)])
    clean = guard.neutralise(visible) if verdict.flagged else visible
    if stuffing:
        ratio = stuffing_ratio(clean)
        destuffed = destuff(clean)
        removed = len(clean.split()) - len(destuffed.split())
        if ratio >= STUFFED_RATIO and removed >= _STUFFED_MIN_WORDS:
            reasons.append("stuffing")
        clean = destuffed
    if len(clean) > max_chars:
        clean = clean[: max_chars - 1].rstrip() + "…"
    return Sanitised(
        clean, bool(reasons), tuple(reasons), sum(redacted.counts.values()), scoring=scoring
    )


@lru_cache(maxsize=1)
def _default_guard() -> InjectionGuard:
    return InjectionGuard()


def embeddable(text: str, guard: InjectionGuard | None = None) -> str:
    """Catalog text as it is *embedded* (retrieval ranks on it): what a reader sees, with
    encoded payloads and guard-flagged instruction sentences removed and keyword stuffing
    capped — so instruction text a prompt would never show cannot pull an item's vector
    towards a query either. Ordinary text comes back unchanged."""
    if not text:
        return text
    guard = guard or _default_guard()
    visible = visible_text(mask_encoded(text))
    # ordinary text is its own visible reading: one scan, not the same one twice
    if guard.scan(text).flagged or (visible != text and guard.scan(visible).flagged):
        visible = " ".join(guard.neutralise(visible).replace(REMOVED, " ").split())
    return destuff(visible.replace(ENCODED, " ").strip()) if visible != text else destuff(text)


def scoring_texts(texts: Sequence[str], guard: InjectionGuard | None = None) -> list[str]:
    """What the instruction scorer reads for each of ``texts`` when serving quotes it
    (:attr:`Sanitised.scoring`: the PII-redacted visible text and decoded payloads, the
    same whatever the length cap) — for scoring catalog text ahead of serving."""
    guard = guard or _default_guard()
    out = [sanitise(text, guard).scoring for text in texts if text]
    return list(dict.fromkeys(t for t in out if t))


def sanitise(text: str | None, guard: InjectionGuard, max_chars: int = 400) -> Sanitised:
    """``text`` redacted, neutralised, unencoded, destuffed and cut to ``max_chars``."""
    if not text:
        return Sanitised("")
    return _clean(text, guard, max_chars, stuffing=True)


class Sanitiser:
    """:func:`sanitise` memoised per text, plus the instruction scorer when there is one.

    Args:
        guard: the injection guard (a default one when None).
        scorer: the embedding-based instruction scorer (None: rules and decoders only).
        stuffing: cap keyword stuffing (off only to measure what it does).
        cache_size: cleaned texts kept (LRU).
    """

    def __init__(
        self,
        guard: InjectionGuard | None = None,
        scorer: InstructionScorer | None = None,
        *,
        stuffing: bool = True,
        cache_size: int = 50_000,
    ) -> None:
        self.guard = guard or InjectionGuard()
        self.scorer = scorer
        self.stuffing = stuffing
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int], Sanitised] = OrderedDict()
        self._background: set[asyncio.Future[list[float]]] = set()

    def clean(self, text: str | None, max_chars: int = 400) -> Sanitised:
        """The sanitised text (no instruction score: see :meth:`screen`)."""
        if not text:
            return Sanitised("")
        key = (text, max_chars)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        done = _clean(text, self.guard, max_chars, self.stuffing)
        self._cache[key] = done
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return done

    async def warm(self) -> None:
        """Load what the first request would otherwise wait for (the scorer's exemplars,
        and the catalog margins its store holds)."""
        if self.scorer is not None:
            await self.scorer.preload()

    async def screen(
        self,
        texts: Sequence[tuple[str | None, int]],
        budget_s: float | None = None,
        *,
        catalog: bool = False,
    ) -> list[Sanitised]:
        """Each ``(text, max_chars)`` cleaned and, with a scorer, scored (one batch).

        Args:
            texts: the texts and their length caps.
            budget_s: the longest to wait for scores of texts never seen before (None:
                until they are scored). Texts not scored in time are scored in the
                background, for the next request, and count as unflagged by the scorer
                for this one (the guard's flags and the displacement bound still hold).
            catalog: the texts are catalog text (titles, descriptions): their scores may
                come from, and go to, the scorer's shared store; user text never does.
        """
        done = [self.clean(text, max_chars) for text, max_chars in texts]
        scorer = self.scorer
        if scorer is None:
            return done
        todo = list(dict.fromkeys(d.scoring for d in done if d.scoring))
        missing = [t for t in todo if scorer.cached(t) is None]
        if missing:
            task = asyncio.ensure_future(scorer.scores(missing, catalog=catalog))
            if budget_s is None:
                await task
            else:
                finished, _ = await asyncio.wait({task}, timeout=budget_s)
                if not finished:
                    self._background.add(task)
                    task.add_done_callback(self._forget)
                elif task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        out = []
        for d in done:
            score = scorer.cached(d.scoring) if d.scoring else None
            if score is None:
                out.append(d)
            elif scorer.flagged(score):
                reasons = (*d.reasons, "instruction")
                out.append(replace(d, flagged=True, reasons=reasons, score=score))
            else:
                out.append(replace(d, score=score))
        return out

    async def aclose(self) -> None:
        """Cancel the scoring still running in the background (at shutdown)."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, task: asyncio.Future[list[float]]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("instruction scoring failed in the background: %s", task.exception())

    async def screen_query(self, query: str | None) -> tuple[str | None, bool, tuple[str, ...]]:
        """The query as it may steer anything (intent, retrieval, prompts), whether
        anything in it was flagged, and why.

        Sentences the guard flags are removed (its rules are precise); encoded payloads
        are masked and invisible characters dropped. The instruction scorer's flag (on
        the PII-redacted sentences) removes nothing — it is the less precise signal, and a
        query is what the user asked for — but marks the query flagged, so that no LLM
        acts on it (intent by the rules, no LLM movement in the rerank).
        """
        text = (query or "").strip()
        if not text:
            return None, False, ()
        verdict = self.guard.scan(text)
        reasons = list(verdict.reasons)
        kept = self.guard.neutralise(text) if verdict.flagged else text
        kept = " ".join(visible_text(mask_encoded(kept.replace(REMOVED, " "))).split())
        scorer = self.scorer
        if scorer is not None and kept:
            parts = sentences(redact(kept).text)
            scores = await scorer.scores(parts) if parts else []
            if any(scorer.flagged(score) for score in scores):
                reasons.append("instruction")
        return kept or None, bool(reasons), tuple(reasons)
