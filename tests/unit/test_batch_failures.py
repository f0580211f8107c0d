"""Isolating the records a store refuses: every other record handled exactly once."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaError

from recsys.exceptions import DataRejected
from streams.batch_failures import STORE_REJECTED, commit_may_fail, handle_isolating


@pytest.mark.parametrize(("size", "bad"), [(1, {0}), (7, {3}), (64, {0, 63}), (33, {5, 6, 20})])
def test_refused_records_are_isolated_and_the_rest_handled_once(size: int, bad: set[int]) -> None:
    applied: list[int] = []
    rejected: list[tuple[int, str]] = []
    calls = 0

    async def handle(batch: list[int]) -> None:  # one transaction: all or nothing
        nonlocal calls
        calls += 1
        if bad & set(batch):
            raise DataRejected(f"refused {sorted(bad & set(batch))}")
        applied.extend(batch)

    asyncio.run(
        handle_isolating(
            handle,
            list(range(size)),
            lambda r, reason, error: rejected.append((r, reason)),
            lambda n, exc: None,
        )
    )
    assert sorted(applied) == [i for i in range(size) if i not in bad]
    assert len(applied) == len(set(applied))  # exactly once
    assert applied == sorted(applied)  # in order
    assert rejected == [(i, STORE_REJECTED) for i in sorted(bad)]
    assert calls <= 1 + 2 * len(bad) * max(1, size.bit_length())


def test_only_a_group_in_motion_excuses_a_failed_commit() -> None:
    assert commit_may_fail(KafkaError(KafkaError.UNKNOWN_MEMBER_ID))
    assert commit_may_fail(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    assert not commit_may_fail(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert not commit_may_fail(KafkaError(KafkaError.UNKNOWN_MEMBER_ID, fatal=True))
