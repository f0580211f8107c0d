"""What every LLM use in serving reports: the accounting shared by rerank, intent and
explanation outcomes, and its ``rec.llm-log`` record.

An outcome is also produced when the LLM was *not* called (cache hit, guard, failure
before the call), so one record per involvement or decision can always be logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recsys.llm.result import LlmResult, is_transport_failure
from recsys.records import LlmInvolvement, LlmUseCase, ValidationResult

__all__ = ["LlmAccounting", "accounting_from"]


@dataclass(frozen=True, kw_only=True)
class LlmAccounting:
    """Whether and how an LLM was involved, and what it cost.

    ``llm_reason`` is the client's own failure reason (``timeout``, ``http_429``,
    ``invalid_json``…; None on success): :class:`recsys.serving.llm_gate.LlmGate`
    counts only transport failures against the breaker.
    """

    called: bool = False
    used: bool = False
    cache_hit: bool = False
    validation: ValidationResult = ValidationResult.NOT_RUN
    errors: list[str] = field(default_factory=list)
    injection_flagged: bool = False
    fallback_reason: str | None = None
    prompt_version: str = ""
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    attempts: int = 0
    llm_reason: str | None = None
    #: the messages as sent (None: no call went out, or prompts are not logged)
    prompt: str | None = None
    #: the displacement bound the decision was held to (rerank; None: not a ranking)
    max_displacement: int | None = None
    #: the most places the decision moved any item from the ranker's order
    moved_max: int = 0
    #: candidates whose text was flagged, so that no LLM decision could move them up
    clamped_items: int = 0
    #: which layers flagged untrusted text (guard rule, ``encoded:…``, ``instruction``…)
    injection_reasons: list[str] = field(default_factory=list)

    @property
    def transport_failed(self) -> bool:
        """The endpoint failed (timeout, HTTP error, connection) on a call that went out."""
        return self.called and is_transport_failure(self.llm_reason)

    @property
    def decision(self) -> str:
        """One word for ``rec.llm-log``: cache_hit, called, or why no call was made."""
        if self.cache_hit:
            return "cache_hit"
        if self.called:
            return "called"
        return self.fallback_reason or "not_called"

    def involvement(
        self,
        *,
        request_id: str,
        use_case: LlmUseCase,
        user_id: str | None = None,
        item_id: str | None = None,
        route: str | None = None,
        propensity: float | None = None,
    ) -> LlmInvolvement:
        """The ``rec.llm-log`` record of this outcome."""
        return LlmInvolvement(
            request_id=request_id,
            user_id=user_id,
            item_id=item_id,
            use_case=use_case,
            called=self.called,
            used=self.used,
            decision=self.decision,
            prompt_version=self.prompt_version or None,
            model=self.model,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            latency_ms=self.latency_ms,
            cost_usd=self.cost_usd,
            cache_hit=self.cache_hit,
            attempts=self.attempts,
            validation=self.validation,
            validation_errors=[e[:300] for e in self.errors[:10]],
            hallucinated_ids=list(getattr(self, "hallucinated_ids", []))[:50],
            injection_flagged=self.injection_flagged,
            injection_reasons=list(dict.fromkeys(self.injection_reasons))[:20],
            max_displacement=self.max_displacement,
            moved_max=self.moved_max,
            clamped_items=self.clamped_items,
            fallback=not self.used,
            fallback_reason=self.fallback_reason,
            route=route,
            propensity=propensity,
            prompt=self.prompt,
        )


def accounting_from(result: LlmResult[Any]) -> dict[str, Any]:
    """The accounting fields of a client result (to splat into an outcome)."""
    return {
        "called": result.attempts > 0,
        "model": result.model,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "latency_ms": result.latency_ms,
        "cost_usd": result.cost_usd,
        "attempts": result.attempts,
        "llm_reason": result.reason,
        "prompt": result.prompt,
    }
