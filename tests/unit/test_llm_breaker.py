from __future__ import annotations

from recsys.llm.breaker import CircuitBreaker


def test_opens_after_consecutive_failures_and_lets_one_trial_through_after_reset() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=3, reset_s=10, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record(False)
    breaker.record(True)  # a success resets the count
    for _ in range(3):
        breaker.record(False)
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.record(False)  # trial failed: open again
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state == "closed" and breaker.allow()
