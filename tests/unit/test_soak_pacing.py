"""The soak's load pacing: every message on time, one sleep per tick (not per message)."""

from __future__ import annotations

from benchmarks.common import paced


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps = 0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def run(rate: float, tick_s: float, seconds: float) -> tuple[list[tuple[int, float]], FakeClock]:
    clock = FakeClock(1000.0)
    sent = [
        (i, clock.now)
        for i in paced(rate, tick_s, 1000.0, 1000.0 + seconds, clock=clock.time, sleep=clock.sleep)
    ]
    return sent, clock


def test_ticks_send_every_message_never_early_with_one_sleep_per_tick() -> None:
    sent, clock = run(rate=200, tick_s=0.02, seconds=2.0)
    assert [i for i, _ in sent] == list(range(400))
    assert all(at >= 1000.0 + i / 200 - 1e-9 for i, at in sent)  # none before it is due
    assert all(at <= 1000.0 + i / 200 + 0.02 + 1e-9 for i, at in sent)  # late by < a tick
    assert clock.sleeps <= 2.0 / 0.02 + 1  # 100 ticks, not 400 sleeps


def test_tick_zero_sleeps_until_each_message() -> None:
    sent, clock = run(rate=50, tick_s=0.0, seconds=1.0)
    assert [i for i, _ in sent] == list(range(50))
    assert all(abs(at - (1000.0 + i / 50)) < 1e-9 for i, at in sent)
    assert clock.sleeps == 49


def test_a_late_start_catches_up_at_once() -> None:
    clock = FakeClock(1000.5)  # half a second behind: 100 events due already
    sent = list(paced(200, 0.02, 1000.0, 1001.0, clock=clock.time, sleep=clock.sleep))
    assert sent == list(range(200))
    assert clock.sleeps <= 26
