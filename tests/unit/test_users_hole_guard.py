"""The users worker's guard against offsets Faust skipped: events after a hole are held
back and the partition is sought back to it; redeliveries (lower offsets) pass."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from workers.users_worker import HoleGuard


def events(*pairs: tuple[int, int]) -> list[Any]:
    return [SimpleNamespace(message=SimpleNamespace(partition=p, offset=o)) for p, o in pairs]


def offsets(batch: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.partition, e.message.offset) for e in batch]


def test_holes_are_sought_back_and_redeliveries_pass() -> None:
    guard = HoleGuard()
    keep, rewind = guard.split(events((0, 5), (0, 6), (1, 0)))
    assert offsets(keep) == [(0, 5), (0, 6), (1, 0)] and rewind == {}
    keep, rewind = guard.split(events((0, 7), (0, 9), (0, 10), (1, 1)))
    assert offsets(keep) == [(0, 7), (1, 1)] and rewind == {0: 8}
    keep, rewind = guard.split(events((0, 3), (0, 4), (0, 5)))  # redelivered after a seek
    assert offsets(keep) == [(0, 3), (0, 4), (0, 5)] and rewind == {}
    keep, rewind = guard.split(events((0, 6), (0, 7), (0, 8)))
    assert offsets(keep) == [(0, 6), (0, 7), (0, 8)] and rewind == {}
