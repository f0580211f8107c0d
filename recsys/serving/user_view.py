"""From the users domain's state to what the request path reads (:class:`UserView`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import replace

from recsys.cf.interactions import Interaction
from recsys.cf.profile import DEFAULT_PROFILE_EVENTS, user_profile
from recsys.records import UserEvent, WarmthBucket
from recsys.serving.ports import UserView
from recsys.users.state import VISIT_EVENTS, UserState, UserStateConfig, apply

__all__ = ["RECENT_HALF_LIFE", "ReplayUsers", "view_of"]

#: Fold-in weight of a recent item halves every this many positions (newest = 1).
RECENT_HALF_LIFE = 20.0


def view_of(user_id: str, state: UserState | None, consumed: Iterable[str]) -> UserView:
    """The request path's view of a user (an unknown user: cold and empty)."""
    if state is None:
        return UserView(user_id, consumed=frozenset(consumed))
    session = state.session
    recent = tuple(
        (item, 0.5 ** (position / RECENT_HALF_LIFE))
        for position, (item, _) in enumerate(state.recent_items)
    )
    return UserView(
        user_id=user_id,
        warmth=WarmthBucket(state.warmth),
        positives=state.positives,
        recent=recent,
        session_items=tuple(i for i, _ in session.items) if session is not None else (),
        session_query=session.query if session is not None else None,
        consumed=frozenset(consumed),
    )


class ReplayUsers:
    """A :class:`~recsys.serving.ports.UserReader` built from replayed events, so a
    counterfactual request sees exactly what had happened before it (nothing later) —
    the CF profile included, as :class:`~recsys.serving.pg_ports.PgUsers` reads it."""

    def __init__(self, cfg: UserStateConfig, profile_events: int = DEFAULT_PROFILE_EVENTS) -> None:
        self.cfg = cfg
        self.profile_events = profile_events
        self.states: dict[str, UserState] = {}
        self.consumed: dict[str, set[str]] = {}
        self.events: dict[str, deque[Interaction]] = {}

    def observe(self, event: UserEvent) -> None:
        self.states[event.user_id] = apply(self.states.get(event.user_id), event, self.cfg)
        if event.item_id is not None and event.event_type in VISIT_EVENTS:
            self.consumed.setdefault(event.user_id, set()).add(event.item_id)
        if event.item_id is not None and self.profile_events > 0:
            self.events.setdefault(event.user_id, deque(maxlen=self.profile_events)).append(
                Interaction(
                    event.user_id,
                    event.item_id,
                    event.event_type.value,
                    event.rating,
                    event.occurred_at.timestamp(),
                )
            )

    async def view(self, user_id: str) -> UserView:
        view = view_of(user_id, self.states.get(user_id), self.consumed.get(user_id, ()))
        if user_id not in self.states or self.profile_events <= 0:
            return view
        return replace(view, cf_profile=tuple(user_profile(self.events.get(user_id, ()))))
