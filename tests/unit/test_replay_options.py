"""Replay ranges and times: clear errors for what cannot be a range."""

from __future__ import annotations

import pytest

from jobs.replay import parse_time
from recsys.archive import ArchivedMessage
from recsys.exceptions import InvalidRange
from streams.replay import ReplayRange


def test_times_are_iso_or_epoch_ms() -> None:
    assert parse_time("2026-03-01T00:00:00Z", "--since") == 1_772_323_200_000
    assert parse_time("2026-03-01T01:00:00+01:00", "--since") == 1_772_323_200_000
    assert parse_time("2026-03-01", "--since") == 1_772_323_200_000  # naive = UTC
    assert parse_time("1772323200000", "--until") == 1_772_323_200_000
    assert parse_time(None, "--until") is None
    with pytest.raises(InvalidRange, match="--since: cannot read 'yesterday'"):
        parse_time("yesterday", "--since")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"from_offset": 5, "to_offset": 5}, "empty offset range"),
        ({"from_offset": -1}, "--from-offset must be 0 or more"),
        ({"since_ms": 10, "until_ms": 10}, "empty time range"),
    ],
)
def test_bad_ranges_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidRange, match=message):
        ReplayRange(**kwargs)  # type: ignore[arg-type]


def test_range_membership() -> None:
    rng = ReplayRange(partitions=frozenset({1}), from_offset=2, to_offset=4, since_ms=100)

    def msg(partition: int, offset: int, ts: int) -> ArchivedMessage:
        return ArchivedMessage("t", partition, offset, ts, None, [], 1, {})

    assert rng.keeps(msg(1, 2, 100)) and rng.keeps(msg(1, 3, 500))
    assert not rng.keeps(msg(0, 2, 100))  # partition
    assert not rng.keeps(msg(1, 4, 100))  # to_offset is exclusive
    assert not rng.keeps(msg(1, 1, 100))
    assert not rng.keeps(msg(1, 3, 99))  # before since
