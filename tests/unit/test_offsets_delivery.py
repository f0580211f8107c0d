"""In-order commits over out-of-order completion, and delivery groups settling."""

from __future__ import annotations

import threading

import pytest

from streams.delivery import DeliveryGroup
from streams.offsets import OffsetTracker

TP = ("rec.requests", 0)
OTHER = ("rec.requests", 1)


def test_the_committable_position_stops_at_the_first_unfinished_offset() -> None:
    t = OffsetTracker()
    for offset in (10, 11, 12, 13):
        t.start(TP, offset)
    assert t.committable() == {TP: 10}
    assert t.finish(TP, 12) and t.finish(TP, 13)  # later ones finish first
    assert t.committable() == {TP: 10}
    assert t.finish(TP, 10)
    assert t.committable() == {TP: 11}  # 11 still open: 12 and 13 must wait
    assert t.finish(TP, 11)
    assert t.committable() == {TP: 14}  # all done: one past the highest started
    assert t.in_flight() == 0


def test_partitions_are_independent_and_dropped_ones_are_ignored() -> None:
    t = OffsetTracker()
    t.start(TP, 0)
    t.start(OTHER, 5)
    assert t.finish(OTHER, 5)
    assert t.committable() == {TP: 0, OTHER: 6}
    assert t.in_flight(TP) == 1 and t.in_flight() == 1
    t.drop([TP])
    assert not t.finish(TP, 0)  # revoked: its late completion changes nothing
    assert t.committable() == {OTHER: 6}
    assert not t.finish(OTHER, 5)  # finishing twice is not counted twice


def test_a_late_input_of_an_earlier_assignment_cannot_finish_the_new_one() -> None:
    """Revoked with offset 7 in flight, assigned back, 7 consumed again: the first
    handling's late completion must not mark the second one done."""
    t = OffsetTracker()
    old = t.start(TP, 7)
    t.drop([TP])
    new = t.start(TP, 7)
    assert new != old
    assert not t.finish(TP, 7, old)
    assert t.committable() == {TP: 7} and t.in_flight(TP) == 1
    assert t.finish(TP, 7, new)
    assert t.committable() == {TP: 8}


def test_a_group_settles_once_sealed_and_every_message_is_acknowledged() -> None:
    settled: list[DeliveryGroup] = []
    g = DeliveryGroup((TP, 3), settled.append)
    g.sent()
    g.sent()
    g.delivered()
    assert not settled
    g.seal()  # the handler is done, one message still unacknowledged
    assert not settled
    g.delivered()
    assert settled == [g] and not g.errors
    with pytest.raises(RuntimeError, match="already settled"):
        g.sent()


def test_a_group_with_nothing_produced_settles_on_seal_and_errors_are_kept() -> None:
    settled: list[DeliveryGroup] = []
    empty = DeliveryGroup("a", settled.append)
    empty.seal()
    failed = DeliveryGroup("b", settled.append)
    failed.sent()
    failed.seal()
    failed.delivered("rec.responses: timed out")
    assert settled == [empty, failed]
    assert failed.errors == ["rec.responses: timed out"]


def test_delivery_reports_from_many_threads_settle_exactly_once() -> None:
    settled: list[DeliveryGroup] = []
    g = DeliveryGroup("x", settled.append)
    for _ in range(400):
        g.sent()
    g.seal()
    threads = [
        threading.Thread(target=lambda: [g.delivered() for _ in range(100)]) for _ in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert settled == [g] and g.pending == 0
