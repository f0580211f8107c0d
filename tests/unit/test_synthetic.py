from __future__ import annotations

from collections import Counter
from datetime import timedelta

from recsys.records import EventType
from recsys.synthetic import SyntheticWorkload, WorkloadConfig


def _small() -> SyntheticWorkload:
    return SyntheticWorkload(WorkloadConfig(n_items=120, n_users=80, seed=3))


def test_workload_is_deterministic() -> None:
    a, b = _small(), _small()
    assert [i.item_id for i in a.catalog()] == [i.item_id for i in b.catalog()]
    ea, eb = list(a.events()), list(b.events())
    assert [(e.event_id, e.item_id) for e in ea] == [(e.event_id, e.item_id) for e in eb]


def test_events_are_time_ordered_valid_and_reference_real_items() -> None:
    w = _small()
    ids = {i.item_id for i in w.catalog()}
    events = list(w.events())
    assert events == sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    assert len({e.event_id for e in events}) == len(events)
    for e in events:
        if e.event_type is EventType.SEARCH:
            assert e.query
        else:
            assert e.item_id in ids


def test_popularity_is_skewed_and_activity_is_heavy_tailed() -> None:
    w = SyntheticWorkload(WorkloadConfig(n_items=300, n_users=300, seed=5))
    counts = Counter(e.item_id for e in w.events() if e.item_id)
    top = sum(c for _, c in counts.most_common(30))
    assert top / sum(counts.values()) > 0.3  # top 10 % of items draw a large share
    activity = sorted(u.activity for u in w.users)
    assert activity[len(activity) // 2] <= 5  # most users are cold...
    assert sum(a > 80 for a in activity) >= 3  # ...and a few are warm


def test_requests_mix_new_users_and_queries() -> None:
    reqs = _small().requests(200)
    assert any(r.user_id.startswith("new-user") for r in reqs)
    assert any(r.query for r in reqs)
    assert len({r.request_id for r in reqs}) == 200


def test_outcomes_follow_each_request_within_the_window_on_unconsumed_items() -> None:
    w = _small()
    list(w.events())  # the history marks what each user consumed
    requests = w.requests(40, new_user_share=0.25)
    outcomes = w.outcomes(requests, per_request=2, within=timedelta(minutes=10))
    by_id = {r.request_id: r for r in requests}
    consumed = {u.user_id: u.consumed for u in w.users}
    assert outcomes == sorted(outcomes, key=lambda e: (e.occurred_at, e.event_id))
    assert len({e.event_id for e in outcomes}) == len(outcomes)
    clicks = Counter(e.event_id.split("-o")[0] for e in outcomes if e.event_type is EventType.CLICK)
    # heavy users may have consumed every item they would pick: a few requests get none
    assert set(clicks) <= set(by_id) and len(clicks) >= 30 and max(clicks.values()) <= 2
    for e in outcomes:
        request = by_id[e.event_id.split("-o")[0]]
        assert e.user_id == request.user_id
        assert timedelta(0) < e.occurred_at - request.requested_at <= timedelta(minutes=10)
        assert e.item_id not in consumed.get(e.user_id, set())
        assert e.event_type in (EventType.CLICK, EventType.PURCHASE)
