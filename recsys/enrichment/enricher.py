"""The LLM step of enrichment: cache, breaker, one call, one retry on invalid output, fallback.

Every LLM call, and every decision not to make one, is reported as an
:class:`~recsys.records.LlmInvolvement` through the ``emit`` callback at the moment it
happens (the worker puts them on ``rec.llm-log``). Decisions:

* ``no_endpoint`` / ``disabled`` — no LLM configured / enrichment switched off;
* ``cache_hit`` — a validated answer for this (content hash, prompt version, model);
* ``breaker_open`` — the endpoint failed repeatedly; skipped until the breaker resets;
* ``called`` — one structured call (its retries on 429/5xx/timeouts included), with
  tokens, latency, cost, attempts and the validation result.

An invalid answer (not JSON, extra fields, over-long summary, tags outside the
taxonomy, …) is asked for once more, with the validation errors; a second invalid
answer, or a transport failure, means the item goes on with its raw text, flagged
``LLM_FAILED`` with the reason. A failure never raises: only the cache's database
errors do (the caller retries the batch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recsys.enrichment.cache import CacheKey, EnrichmentCache, InMemoryEnrichmentCache
from recsys.enrichment.schema import (
    SCHEMA_NAME,
    Enrichment,
    enrichment_messages,
    enrichment_prompt,
)
from recsys.enrichment.taxonomy import Taxonomy
from recsys.llm.breaker import CircuitBreaker
from recsys.llm.client import LlmClient, LlmResult, is_transport_failure
from recsys.llm.prompts import PromptStyle
from recsys.records import (
    CatalogChange,
    EnrichmentStatus,
    LlmInvolvement,
    LlmUseCase,
    ValidationResult,
)

__all__ = ["EnrichOutcome", "Enricher", "LogSink"]

log = logging.getLogger(__name__)

#: Receives one record per LLM call or decision not to call.
LogSink = Callable[[LlmInvolvement], None]

NO_ENDPOINT = "no_endpoint"
DISABLED = "disabled"


@dataclass(frozen=True)
class EnrichOutcome:
    """What the LLM step produced for one item."""

    status: EnrichmentStatus
    enrichment: Enrichment | None = None
    prompt_version: str | None = None
    llm_model: str | None = None
    error: str | None = None


class Enricher:
    """Enriches catalog items through an LLM client, with cache and fallback."""

    def __init__(
        self,
        client: LlmClient | None,
        cache: EnrichmentCache,
        taxonomy: Taxonomy | None = None,
        *,
        off_reason: str = NO_ENDPOINT,
        breaker: CircuitBreaker | None = None,
        memory_entries: int = 10_000,
        prompt_style: PromptStyle = "standard",
    ) -> None:
        self.client = client
        self.cache = cache
        self.taxonomy = taxonomy or Taxonomy()
        self.prompt = enrichment_prompt(self.taxonomy, prompt_style)
        self.off_reason = off_reason
        self.breaker = breaker
        # answers not yet known to be in the shared cache survive a failed batch here
        self._memory = InMemoryEnrichmentCache(memory_entries)

    @property
    def model(self) -> str | None:
        """The LLM model name, or None when the LLM is off."""
        return self.client.model if self.client is not None else None

    def _validate(self, data: dict[str, Any]) -> Enrichment | None:
        try:
            return Enrichment.model_validate(data, context={"taxonomy": self.taxonomy})
        except ValueError:
            return None

    async def _cached(self, key: CacheKey) -> Enrichment | None:
        data = await self._memory.get(key)
        if data is None:
            data = await self.cache.get(key)
        return self._validate(data) if data is not None else None

    async def enrich(
        self, change: CatalogChange, content_hash: str, *, deadline: float | None, emit: LogSink
    ) -> EnrichOutcome:
        """Enrich one item (or decide not to), reporting every call/decision to ``emit``."""
        base: dict[str, Any] = {
            "request_id": change.change_id,
            "item_id": change.item_id,
            "use_case": LlmUseCase.ENRICH,
        }
        if self.client is None:
            emit(
                LlmInvolvement(
                    **base,
                    called=False,
                    used=False,
                    decision=self.off_reason,
                    fallback=True,
                    fallback_reason=self.off_reason,
                )
            )
            return EnrichOutcome(EnrichmentStatus.LLM_OFF, error=self.off_reason)
        client = self.client
        version = self.prompt.version
        base |= {"prompt_version": version, "model": client.model}
        key = CacheKey(content_hash, version, client.model)
        cached = await self._cached(key)
        if cached is not None:
            emit(
                LlmInvolvement(
                    **base,
                    called=False,
                    used=True,
                    decision="cache_hit",
                    cache_hit=True,
                    validation=ValidationResult.VALID,
                )
            )
            return EnrichOutcome(EnrichmentStatus.CACHED, cached, version, client.model)
        if self.breaker is not None and not self.breaker.allow():
            emit(
                LlmInvolvement(
                    **base,
                    called=False,
                    used=False,
                    decision="breaker_open",
                    fallback=True,
                    fallback_reason="breaker_open",
                )
            )
            return EnrichOutcome(
                EnrichmentStatus.LLM_FAILED, None, version, client.model, "breaker_open"
            )

        messages = enrichment_messages(self.prompt, change, self.taxonomy)
        result: LlmResult[Enrichment] | None = None
        for call in (1, 2):
            result = await client.complete(
                messages,
                schema_name=SCHEMA_NAME,
                schema=self.prompt.schema,
                model=Enrichment,
                context={"taxonomy": self.taxonomy},
                deadline=deadline,
            )
            if self.breaker is not None and result.attempts > 0:
                self.breaker.record(not is_transport_failure(result.reason))
            ask_again = not result.ok and result.validated is False and call == 1
            emit(self._call_record(base, result, ask_again))
            if result.ok and result.value is not None:
                await self._remember(key, result)
                return EnrichOutcome(EnrichmentStatus.ENRICHED, result.value, version, client.model)
            if not ask_again:
                break
            problems = "; ".join(result.validation_errors) or result.detail
            messages = [
                *messages,
                {
                    "role": "user",
                    "content": "Your previous answer was rejected: "
                    f"{problems[:800]}. Answer again with one JSON object that follows the "
                    "schema and the rules; use only the allowed tags.",
                },
            ]
        assert result is not None
        log.info("enrichment of %s failed: %s %s", change.item_id, result.reason, result.detail)
        return EnrichOutcome(
            EnrichmentStatus.LLM_FAILED, None, version, client.model, result.reason or "unknown"
        )

    async def _remember(self, key: CacheKey, result: LlmResult[Enrichment]) -> None:
        assert result.value is not None
        value = result.value.model_dump(mode="json")
        await self._memory.put(key, value)
        await self.cache.put(
            key,
            value,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
        )

    @staticmethod
    def _call_record(
        base: dict[str, Any], result: LlmResult[Enrichment], ask_again: bool
    ) -> LlmInvolvement:
        if result.ok:
            validation = ValidationResult.VALID
        elif result.validated is False:
            validation = ValidationResult.INVALID
        else:
            validation = ValidationResult.NOT_RUN
        errors = list(result.validation_errors)
        if validation is ValidationResult.INVALID and not errors and result.detail:
            errors = [result.detail]
        fallback = not result.ok and not ask_again
        return LlmInvolvement(
            **(base | {"model": result.model or base["model"]}),
            called=result.attempts > 0,
            used=result.ok,
            decision="called" if result.attempts > 0 else (result.reason or "not_called"),
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            latency_ms=result.latency_ms,
            cost_usd=result.cost_usd,
            attempts=result.attempts,
            validation=validation,
            validation_errors=[e[:300] for e in errors[:10]],
            fallback=fallback,
            fallback_reason=result.reason if fallback else None,
            prompt=result.prompt,
        )
