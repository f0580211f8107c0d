"""The give-up rule of `up`: consecutive failures without a healthy run, whatever the cycle
length (the old "5 restarts per minute" never fired when a cycle outlasted 12 s)."""

from __future__ import annotations

from stack.restarts import RestartPolicy, RestartState


def test_gives_up_after_max_failures_in_a_row_however_slow_each_cycle() -> None:
    policy = RestartPolicy(max_failures=4, healthy_after_s=60, backoff_max_s=10)
    state = RestartState(policy, started_at=0.0)
    now = 0.0
    verdicts = []
    for _ in range(4):
        now += 45.0  # each run fails 45 s in: 4 failures take 3 minutes
        verdicts.append(state.failed(now))
        assert state.due_at is None or state.due_at > now
        state.started(now + 1)
    assert verdicts == [True, True, True, False]
    assert state.failures == 4 and state.restarts == 3


def test_a_healthy_run_starts_the_count_again() -> None:
    policy = RestartPolicy(max_failures=2, healthy_after_s=60)
    state = RestartState(policy, started_at=0.0)
    assert state.failed(10.0)  # 1 quick failure
    state.started(11.0)
    assert state.failed(200.0)  # ran 189 s: healthy, counts as the first again
    assert state.failures == 1
    state.started(201.0)
    assert not state.failed(205.0)  # a second quick one in a row: give up


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(backoff_max_s=3.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
