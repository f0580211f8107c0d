"""The feedback join: which of a user's later events count as outcomes of an impression.

Pure functions over records, no I/O; the ``feedback`` worker feeds them from its
Postgres state, and a data scientist can run them over archived data.

Rules (checked by tests on a scripted session):

* An event counts for an impression when it is the same user's, names an item that
  the impression showed, and happened in ``[impression_at, impression_at + window]``
  (event time: ``UserEvent.occurred_at`` against ``RecResponse.produced_at``). An event
  before the impression or after the window does not count.
* An event carrying ``rec_request_id`` counts only for that request (explicit
  attribution, ``attributed_by="request_id"``); one without counts for every impression
  of the user that showed the item within the window (``attributed_by="item"``).
* Labels: VIEW or CLICK → clicked, CART → carted, PURCHASE → purchased, DISMISS →
  dismissed, the latest RATING → rating; ``outcome_at`` is the first counted event.
  Labels are sets and maxima, so a duplicated event (same ``event_id`` or not) cannot
  change them.
* One example per shown item, outcome or not, with the deterministic id
  ``<request_id>:<item_id>`` — re-emitting it is idempotent for readers that key by id.
* An ``EXPIRED`` answer (the request was shed: :mod:`recsys.serving.shedding`) showed
  nothing and is no impression: it yields no examples (:func:`is_impression`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from recsys.records import EventType, FeedbackExample, RecResponse, UserEvent

__all__ = [
    "OUTCOME_EVENTS",
    "EventClock",
    "attribution",
    "example_id",
    "is_impression",
    "join_impression",
]

OUTCOME_EVENTS = frozenset(
    {
        EventType.VIEW,
        EventType.CLICK,
        EventType.CART,
        EventType.PURCHASE,
        EventType.RATING,
        EventType.DISMISS,
    }
)


def example_id(request_id: str, item_id: str) -> str:
    """Deterministic id of the example of one shown item."""
    return f"{request_id}:{item_id}"


def is_impression(response: RecResponse) -> bool:
    """Whether ``response`` showed the user anything to join outcomes with: not an
    ``EXPIRED`` answer (a shed request; its user saw nothing)."""
    return not response.expired


def attribution(impression: RecResponse, event: UserEvent, window_s: float) -> str | None:
    """``"request_id"`` or ``"item"`` when ``event`` counts for ``impression``, else None.

    Does not check that the impression showed the event's item; :func:`join_impression`
    does.
    """
    if event.user_id != impression.user_id or event.item_id is None:
        return None
    if event.event_type not in OUTCOME_EVENTS:
        return None
    start = impression.produced_at
    if not (start <= event.occurred_at <= start + timedelta(seconds=window_s)):
        return None
    if event.rec_request_id is not None:
        return "request_id" if event.rec_request_id == impression.request_id else None
    return "item"


def join_impression(
    impression: RecResponse, events: Iterable[UserEvent], window_s: float
) -> list[FeedbackExample]:
    """One :class:`FeedbackExample` per shown item, labelled with the events that count
    (none for an ``EXPIRED`` answer)."""
    if not is_impression(impression):
        return []
    matched: dict[str, list[tuple[UserEvent, str]]] = {}
    shown = {item.item_id for item in impression.items}
    for event in events:
        if event.item_id not in shown:
            continue
        how = attribution(impression, event, window_s)
        if how is not None:
            assert event.item_id is not None
            matched.setdefault(event.item_id, []).append((event, how))
    out: list[FeedbackExample] = []
    seen: set[str] = set()
    for item in sorted(impression.items, key=lambda i: i.rank):
        if item.item_id in seen:
            continue
        seen.add(item.item_id)
        hits = matched.get(item.item_id, [])
        kinds = {e.event_type for e, _ in hits}
        ratings = sorted(
            (e.occurred_at, e.event_id, e.rating)
            for e, _ in hits
            if e.event_type is EventType.RATING and e.rating is not None
        )
        hows = {how for _, how in hits}
        out.append(
            FeedbackExample(
                example_id=example_id(impression.request_id, item.item_id),
                request_id=impression.request_id,
                user_id=impression.user_id,
                item_id=item.item_id,
                rank=item.rank,
                route=impression.route.value,
                warmth_bucket=impression.warmth_bucket.value,
                llm_used=impression.llm_used,
                prompt_version=impression.prompt_version,
                llm_model=impression.llm_model,
                model_version=impression.model_version,
                propensity=impression.propensity,
                clicked=bool(kinds & {EventType.VIEW, EventType.CLICK}),
                carted=EventType.CART in kinds,
                purchased=EventType.PURCHASE in kinds,
                dismissed=EventType.DISMISS in kinds,
                rating=ratings[-1][2] if ratings else None,
                attributed_by=(
                    "request_id" if "request_id" in hows else "item" if hows else "none"
                ),
                impression_at=impression.produced_at,
                outcome_at=min((e.occurred_at for e, _ in hits), default=None),
                serve_latency_ms=impression.latency_ms,
                policy_version=impression.policy_version,
                has_query=impression.has_query,
                has_history=impression.has_history,
                rerank_available=impression.rerank_available,
                rerank=impression.rerank,
                content_weight=impression.content_weight,
                popularity_weight=impression.popularity_weight,
                explored=impression.explored,
            )
        )
    return out


class EventClock:
    """Event time per partition of two co-partitioned inputs.

    A partition's time is the *minimum* over the inputs of the latest event time seen on
    each, so a window closes only when both impressions and events have moved past it;
    a partition that has not yet seen both inputs has no time (wall-clock closing covers
    idle partitions).
    """

    def __init__(self, inputs: Iterable[str]) -> None:
        self.inputs = tuple(inputs)
        self._latest: dict[tuple[str, int], datetime] = {}

    def observe(self, source: str, partition: int, at: datetime) -> None:
        """Record an event time seen on ``source``'s ``partition``."""
        key = (source, partition)
        current = self._latest.get(key)
        if current is None or at > current:
            self._latest[key] = at

    def now(self, partition: int) -> datetime | None:
        """The partition's event time, or None until every input has been seen on it."""
        times = [self._latest.get((source, partition)) for source in self.inputs]
        if any(t is None for t in times):
            return None
        return min(t for t in times if t is not None)

    def forget(self, partition: int) -> None:
        """Drop a partition (revoked: its next owner starts its own clock)."""
        for source in self.inputs:
            self._latest.pop((source, partition), None)
