"""Per-user state kept nearline from ``user.events``: pure domain, no I/O.

The ``users`` worker keeps one :class:`UserState` per user in a changelog-backed table
and mirrors it into the Postgres read model; tests and notebooks compute the same state
offline with :func:`fold`. :func:`apply` is deterministic — the same events in the same
order give the same state, bit for bit — which is what makes the state exact after a
crash: a redelivered event is recognised (its ``event_id`` is in the dedup window, or
its Kafka offset is not past the one stored with the state) and changes nothing.

What is stored outside Kafka names the Kafka it belongs to, and keeps its order:

* a :class:`Position` carries the topic's incarnation (its Kafka topic id) beside the
  partition and offset: offsets restart at 0 when a topic is recreated (or when the
  embedded broker, which keeps topics in memory, starts again), and a position of an
  earlier incarnation says nothing about the new one's offsets;
* the dedup window is ordered (oldest first: pruning drops the front) and is stored as
  a JSON *array* of ``[event_id, occurred_at]`` pairs — a JSON object would lose the
  order in Postgres's jsonb, which sorts object keys.

Rules:

* **positive**: CLICK, CART, PURCHASE, or a RATING ≥ 4.0 (``user_events.positive``).
* **warmth** from positives: ≤ ``cold_max_interactions`` cold, ≥
  ``warm_min_interactions`` warm, in between warming.
* **engagement**: a sum of event weights decayed with half-life
  ``engagement_half_life_h``, stated at ``engagement_at`` (the newest event time).
* **recent items**: visits (VIEW, CLICK, CART, PURCHASE, RATING) — distinct, newest
  first, at most ``recent_items_max`` (:func:`recsys.recent.push_recent`).
* **session**: a new one starts when an event comes more than ``session_gap_s`` after
  the current session's last event; its id is ``<user_id>:<start epoch ms>``. It keeps
  its visited items and the last natural-language query (a SEARCH, or any event's
  ``query``). An out-of-order event older than the session's start minus the gap
  belongs to a past session: it is counted but leaves the session alone.
* **dedup**: event ids seen within ``dedup_window_s`` of the newest event time (and at
  most ``dedup_max_events`` of them) are ignored when they come again.
* Events for unknown or deleted items are kept like any other (the state knows no
  catalog); out-of-order events never fail.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from recsys.cf import weights
from recsys.cf.weights import POSITIVE_RATING
from recsys.recent import push_recent
from recsys.records import EventType, UserEvent, WarmthBucket

__all__ = [
    "POSITIVE_RATING",
    "UNKNOWN_INCARNATION",
    "VISIT_EVENTS",
    "Accepted",
    "Position",
    "RecentSnapshot",
    "Session",
    "UserState",
    "UserStateConfig",
    "apply",
    "apply_events",
    "engagement_weight",
    "event_weight",
    "fold",
    "is_positive",
    "is_visit",
    "warmth_of",
]


#: Events that visit an item: recent items, session items and co-visitation.
VISIT_EVENTS = frozenset(
    {EventType.VIEW, EventType.CLICK, EventType.CART, EventType.PURCHASE, EventType.RATING}
)

#: A search is engagement without an item.
_SEARCH_ENGAGEMENT = 0.5

#: The incarnation of a topic whose Kafka topic id is unknown (a broker without topic ids,
#: or state written before incarnations were recorded): it matches no real topic id.
UNKNOWN_INCARNATION = ""


class Position(NamedTuple):
    """Where an event sat in ``user.events``: which incarnation of the topic (its Kafka
    topic id), which partition, which offset. Offsets compare only within one
    incarnation of one partition."""

    topic_id: str
    partition: int
    offset: int

    def same_log(self, other: Position) -> bool:
        """Whether both positions are in the same partition of the same incarnation."""
        return self.topic_id == other.topic_id and self.partition == other.partition


#: The recent items of a user just before an event (shared, never mutated).
RecentSnapshot = Sequence[tuple[str, datetime]]


def is_positive(event: UserEvent) -> bool:
    """CLICK, CART, PURCHASE, or a RATING of at least 4.0 (``user_events.positive``)."""
    return weights.is_positive(event.event_type, event.rating)


def is_visit(event: UserEvent) -> bool:
    """Whether the event visits an item (everything with an item but DISMISS)."""
    return event.event_type in VISIT_EVENTS and event.item_id is not None


def event_weight(event: UserEvent) -> float:
    """Implicit-feedback confidence of one event (``user_events.weight``): the batch CF
    table, :data:`recsys.cf.weights.DEFAULT_WEIGHTS`, so both sides weigh alike."""
    return weights.DEFAULT_WEIGHTS.event_weight(event.event_type, event.rating)


def engagement_weight(event: UserEvent) -> float:
    """What one event adds to the engagement score (a SEARCH counts 0.5)."""
    if event.event_type is EventType.SEARCH:
        return _SEARCH_ENGAGEMENT
    return event_weight(event)


class UserStateSettings(Protocol):
    """The settings the user state reads (the process settings' ``users`` section)."""

    @property
    def cold_max_interactions(self) -> int: ...
    @property
    def warm_min_interactions(self) -> int: ...
    @property
    def engagement_half_life_h(self) -> float: ...
    @property
    def session_gap_s(self) -> int: ...
    @property
    def recent_items_max(self) -> int: ...
    @property
    def dedup_window_s(self) -> int: ...
    @property
    def dedup_max_events(self) -> int: ...


@dataclass(frozen=True)
class UserStateConfig:
    """The settings the state depends on (names as in the settings' ``users`` section)."""

    cold_max_interactions: int = 5
    warm_min_interactions: int = 51
    engagement_half_life_h: float = 72.0
    session_gap_s: int = 1800
    recent_items_max: int = 50
    dedup_window_s: int = 86_400
    dedup_max_events: int = 200

    @classmethod
    def from_settings(cls, settings: UserStateSettings) -> UserStateConfig:
        """The configuration a settings section describes."""
        return cls(
            cold_max_interactions=settings.cold_max_interactions,
            warm_min_interactions=settings.warm_min_interactions,
            engagement_half_life_h=settings.engagement_half_life_h,
            session_gap_s=settings.session_gap_s,
            recent_items_max=settings.recent_items_max,
            dedup_window_s=settings.dedup_window_s,
            dedup_max_events=settings.dedup_max_events,
        )


def warmth_of(positives: int, cfg: UserStateConfig) -> WarmthBucket:
    """The warmth bucket of a user with ``positives`` positive interactions."""
    if positives <= cfg.cold_max_interactions:
        return WarmthBucket.COLD
    if positives >= cfg.warm_min_interactions:
        return WarmthBucket.WARM
    return WarmthBucket.WARMING


class Session(BaseModel):
    """The user's current session."""

    model_config = ConfigDict(extra="forbid")

    session_id: str
    started_at: AwareDatetime
    last_at: AwareDatetime
    events: int = 0
    #: Items visited in the session, ``(item_id, at)``, distinct, newest first.
    items: list[tuple[str, AwareDatetime]] = Field(default_factory=list)
    #: The last natural-language query of the session and when it was asked.
    query: str | None = None
    query_at: AwareDatetime | None = None


class UserState(BaseModel):
    """Everything the recommender knows about one user right now."""

    model_config = ConfigDict(extra="forbid")

    user_id: str
    #: Accepted events so far; grows by one per accepted event (the read model's version).
    events: int = 0
    counts: dict[EventType, int] = Field(default_factory=dict)
    positives: int = 0
    warmth: WarmthBucket = WarmthBucket.COLD
    #: Decayed engagement, as of ``engagement_at``; see :meth:`engagement_now`.
    engagement: float = 0.0
    engagement_at: AwareDatetime | None = None
    #: Visited items ``(item_id, at)``, distinct, newest first, bounded.
    recent_items: list[tuple[str, AwareDatetime]] = Field(default_factory=list)
    session: Session | None = None
    #: Newest event time seen.
    last_event_at: AwareDatetime | None = None
    #: Recent event ids and their event times (the dedup window) in the order they were
    #: accepted, oldest first; stored as a JSON array of pairs (jsonb keeps array order,
    #: not key order).
    seen: dict[str, AwareDatetime] = Field(default_factory=dict)
    #: Where the last accepted event sat in ``user.events`` (with the topic's
    #: incarnation): a redelivery is recognised.
    last_position: Position | None = None

    @field_serializer("seen", when_used="json")
    def _seen_as_pairs(self, seen: dict[str, datetime]) -> list[tuple[str, datetime]]:
        return list(seen.items())

    @field_validator("seen", mode="before")
    @classmethod
    def _seen_from_pairs(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, list):
            return dict(value)
        if info.mode == "json" and isinstance(value, dict) and value:
            # a JSON object's key order is not the acceptance order (jsonb sorts keys)
            raise ValueError("the dedup window must be an ordered array of [event_id, at] pairs")
        return value

    def engagement_now(self, at: datetime, half_life_h: float) -> float:
        """The engagement score decayed to ``at``."""
        if self.engagement_at is None:
            return 0.0
        dt = (at - self.engagement_at).total_seconds()
        return self.engagement * math.pow(2.0, -dt / (half_life_h * 3600.0))

    def count(self, event_type: EventType) -> int:
        """Accepted events of one type."""
        return self.counts.get(event_type, 0)

    def without_dedup(self) -> UserState:
        """The state without the dedup window and position (what the read model keeps)."""
        return self.model_copy(update={"seen": {}, "last_position": None})


def _is_duplicate(state: UserState, event: UserEvent, position: Position | None) -> bool:
    if event.event_id in state.seen:
        return True
    last = state.last_position
    return (
        position is not None
        and last is not None
        and position.same_log(last)
        and position.offset <= last.offset
    )


def _remember(state: UserState, event: UserEvent, cfg: UserStateConfig) -> None:
    seen = state.seen
    seen[event.event_id] = event.occurred_at
    assert state.last_event_at is not None
    horizon = state.last_event_at - timedelta(seconds=cfg.dedup_window_s)
    while seen:
        oldest = next(iter(seen))
        if len(seen) > cfg.dedup_max_events or seen[oldest] < horizon:
            del seen[oldest]
        else:
            break


def _decay(cfg: UserStateConfig, dt_s: float) -> float:
    return math.pow(2.0, -dt_s / (cfg.engagement_half_life_h * 3600.0))


def _apply_one(
    state: UserState, event: UserEvent, cfg: UserStateConfig, owned: Session | None = None
) -> bool:
    """Mutate ``state`` (a private copy) with one accepted event; whether it was counted
    in the current session."""
    at = event.occurred_at
    state.events += 1
    state.counts[event.event_type] = state.counts.get(event.event_type, 0) + 1
    if is_positive(event):
        state.positives += 1
        state.warmth = warmth_of(state.positives, cfg)
    weight = engagement_weight(event)
    if state.engagement_at is None:
        state.engagement, state.engagement_at = weight, at
    elif at >= state.engagement_at:
        dt = (at - state.engagement_at).total_seconds()
        state.engagement = state.engagement * _decay(cfg, dt) + weight
        state.engagement_at = at
    else:
        dt = (state.engagement_at - at).total_seconds()
        state.engagement = state.engagement + weight * _decay(cfg, dt)
    if state.last_event_at is None or at > state.last_event_at:
        state.last_event_at = at
    if is_visit(event):
        assert event.item_id is not None
        state.recent_items = push_recent(
            state.recent_items, event.item_id, at, cfg.recent_items_max
        )
    counted = _apply_session(state, event, cfg, owned)
    _remember(state, event, cfg)
    return counted


def _apply_session(
    state: UserState, event: UserEvent, cfg: UserStateConfig, owned: Session | None
) -> bool:
    """Count the event in the user's session; False for a straggler of an earlier one.

    ``owned`` is the session object this batch already copied (mutable in place); any
    other session is copied before it changes, so the input state is never touched.
    """
    at = event.occurred_at
    gap = timedelta(seconds=cfg.session_gap_s)
    current = state.session
    if current is None or at - current.last_at > gap:
        # built from validated values: no need to validate them again
        current = Session.model_construct(
            session_id=f"{state.user_id}:{int(at.timestamp() * 1000)}",
            started_at=at,
            last_at=at,
            events=0,
            items=[],
            query=None,
            query_at=None,
        )
    elif at < current.started_at - gap:
        return False  # a straggler from an earlier session
    else:
        if current is not owned:
            current = current.model_copy()
        if at < current.started_at:
            current.started_at = at
        if at > current.last_at:
            current.last_at = at
    current.events += 1
    if is_visit(event):
        assert event.item_id is not None
        current.items = push_recent(current.items, event.item_id, at, cfg.recent_items_max)
    query = (event.query or "").strip()
    if query and (current.query_at is None or at >= current.query_at):
        current.query, current.query_at = query, at
    state.session = current
    return True


@dataclass(frozen=True)
class Accepted:
    """An event that changed the state, with what derived effects need to know."""

    event: UserEvent
    #: Where it sat in ``user.events`` (None offline).
    position: Position | None
    #: The user's recent items just before it (co-visitation pairs the event with them).
    recent_before: RecentSnapshot
    #: The session it was counted in (None for a straggler from an earlier session).
    session_id: str | None


def apply_events(
    state: UserState | None,
    events: Iterable[UserEvent | tuple[UserEvent, Position | None]],
    cfg: UserStateConfig,
) -> tuple[UserState | None, list[Accepted]]:
    """Apply events of one user in order; return the new state and the accepted events.

    ``state`` is not changed (a new object is returned). Each event may carry its
    ``(partition, offset)`` in ``user.events`` so that a redelivery is recognised even
    past the dedup window.
    """
    current = _thaw(state) if state is not None else None
    accepted: list[Accepted] = []
    owned: Session | None = None  # the session object this call made (mutable in place)
    for item in events:
        event, position = item if isinstance(item, tuple) else (item, None)
        if current is None:
            current = UserState(user_id=event.user_id)
        elif current.user_id != event.user_id:
            raise ValueError(f"event of {event.user_id!r} applied to {current.user_id!r}")
        if _is_duplicate(current, event, position):
            continue
        before = current.recent_items
        counted = _apply_one(current, event, cfg, owned)
        if position is not None:
            current.last_position = position
        session = current.session
        if counted:
            owned = session  # copied or made by _apply_session
        accepted.append(
            Accepted(event, position, before, session.session_id if counted and session else None)
        )
    return current, accepted


def _thaw(state: UserState) -> UserState:
    """A copy whose containers may be changed without touching ``state``."""
    return state.model_copy(update={"counts": dict(state.counts), "seen": dict(state.seen)})


def apply(
    state: UserState | None,
    event: UserEvent,
    cfg: UserStateConfig,
    position: Position | None = None,
) -> UserState:
    """The state after one event (unchanged content when it is a duplicate)."""
    new, _ = apply_events(state, [(event, position)], cfg)
    assert new is not None
    return new


def fold(events: Iterable[UserEvent], cfg: UserStateConfig) -> dict[str, UserState]:
    """Every user's state after the log ``events`` (in log order), computed offline."""
    states: dict[str, UserState] = {}
    by_user: dict[str, list[UserEvent]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event)
    for user_id, user_events in by_user.items():
        state, _ = apply_events(None, user_events, cfg)
        assert state is not None
        states[user_id] = state
    return states
