"""The LLM gate with a fake clock: deadline, sliding one-minute budget, breaker."""

from __future__ import annotations

from recsys.llm.breaker import CircuitBreaker
from recsys.serving.llm_gate import LlmGate
from recsys.serving.outcome import LlmAccounting


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spent(tokens: int = 0, usd: float = 0.0, reason: str | None = None) -> LlmAccounting:
    return LlmAccounting(
        called=True, tokens_in=tokens, tokens_out=0, cost_usd=usd, llm_reason=reason
    )


def test_deadline_first() -> None:
    gate = LlmGate(CircuitBreaker(), tokens_per_min=None, usd_per_min=None)
    assert gate.allow(0.04) == (False, "deadline")
    assert gate.allow(0.2, min_s=0.5) == (False, "deadline")
    assert gate.allow(0.2) == (True, None)


def test_token_budget_is_a_sliding_minute() -> None:
    clock = Clock()
    gate = LlmGate(CircuitBreaker(clock=clock), tokens_per_min=1000, usd_per_min=None, clock=clock)
    gate.record(spent(600))
    clock.now += 30
    gate.record(spent(400))
    assert gate.tokens_last_minute == 1000
    assert gate.allow(1.0) == (False, "over_budget")
    clock.now += 30.5  # the first 600 are older than a minute now
    assert gate.tokens_last_minute == 400
    assert gate.allow(1.0) == (True, None)
    clock.now += 60
    assert gate.tokens_last_minute == 0


def test_cost_budget() -> None:
    clock = Clock()
    gate = LlmGate(CircuitBreaker(clock=clock), tokens_per_min=None, usd_per_min=0.01, clock=clock)
    gate.record(spent(10, usd=0.006))
    assert gate.allow(1.0) == (True, None)
    gate.record(spent(10, usd=0.006))
    assert gate.allow(1.0) == (False, "over_budget")
    assert abs(gate.usd_last_minute - 0.012) < 1e-9
    clock.now += 61
    assert gate.allow(1.0) == (True, None)


def test_only_transport_failures_open_the_breaker_and_it_closes_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, reset_s=10, clock=clock)
    gate = LlmGate(breaker, tokens_per_min=None, usd_per_min=None, clock=clock)
    for reason in ("invalid_json", "schema_violation", "empty_response"):
        gate.record(spent(reason=reason))
    assert gate.allow(1.0) == (True, None)  # invalid answers are not the endpoint's fault
    gate.record(spent(reason="http_500"))
    gate.record(spent(reason="timeout"))
    assert gate.allow(1.0) == (False, "breaker_open")
    clock.now += 10
    assert gate.allow(1.0) == (True, None)  # half-open: one trial
    assert gate.allow(1.0) == (False, "breaker_open")
    gate.record(spent())  # the trial succeeded
    assert breaker.state == "closed"
    assert gate.allow(1.0) == (True, None)


def test_an_unused_trial_is_released() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_s=5, clock=clock)
    gate = LlmGate(breaker, tokens_per_min=None, usd_per_min=None, clock=clock)
    gate.record(spent(reason="connection"))
    clock.now += 5
    assert gate.allow(1.0) == (True, None)
    gate.record(LlmAccounting(called=False, cache_hit=True))  # e.g. served from the cache
    assert gate.allow(1.0) == (True, None)  # the trial is available again
    assert breaker.state == "half_open"


def test_budget_is_checked_before_the_breaker_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_s=5, clock=clock)
    gate = LlmGate(breaker, tokens_per_min=10, usd_per_min=None, clock=clock)
    gate.record(spent(20, reason="http_503"))
    clock.now += 5
    assert gate.allow(1.0) == (False, "over_budget")
    clock.now += 60
    assert gate.allow(1.0) == (True, None)  # the trial was not used up by the budget check
