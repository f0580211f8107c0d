"""What `doctor` says about the embedded broker's load, from its measured CPU share."""

from __future__ import annotations

import pytest

from stack.broker_load import LIMIT_CPU_SHARE, WARN_FRACTION, BrokerLoad


def _load(share: float, minutes: float = 60.0) -> BrokerLoad:
    return BrokerLoad(pid=1, uptime_s=minutes * 60, cpu_share=share, rss_mb=100.0)


def test_an_idle_broker_is_not_near_its_limit() -> None:
    load = _load(0.02)
    assert not load.near_limit
    assert "restart" not in load.describe()
    assert "2% of a core" in load.describe()


def test_a_busy_broker_is_warned_about_with_a_projection() -> None:
    share = WARN_FRACTION * LIMIT_CPU_SHARE + 0.01
    load = _load(share, minutes=60)
    assert load.near_limit
    left = load.minutes_left
    assert left is not None
    # linear at constant load: the share grows with the batches stored, i.e. with uptime
    assert left == pytest.approx(60 * (LIMIT_CPU_SHARE / share - 1))
    text = load.describe()
    assert f"about {left:.0f} min left" in text and "restart `streamrec up`" in text


def test_a_broker_past_its_limit_says_so() -> None:
    load = _load(LIMIT_CPU_SHARE + 0.1)
    assert load.near_limit and load.minutes_left is None
    assert "past it" in load.describe()
