"""One batch of ``user.events`` → new user states + accepted events with their co-visits.

The ``users`` worker's domain step, free of Kafka and Postgres: events are grouped per
user (keeping log order), applied to each user's state once per batch (one table write
per user per batch, not per event), and each accepted visit gets the co-visits it makes
with the user's recent items *before* it — the same pairs the offline
:class:`recsys.cf.covisit.Covisitation` computes from the same log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from recsys.cf.covisit import CovisitConfig, Pair, pairs_for
from recsys.records import UserEvent
from recsys.users.state import (
    Accepted,
    Position,
    UserState,
    UserStateConfig,
    apply_events,
    is_visit,
)

__all__ = ["BatchUpdate", "covisits_of", "update_batch"]


@dataclass
class BatchUpdate:
    """What one batch changed."""

    #: New state of every user with at least one accepted event.
    states: dict[str, UserState] = field(default_factory=dict)
    #: Accepted events in log order per user, with their co-visits.
    accepted: list[tuple[Accepted, list[Pair]]] = field(default_factory=list)
    #: Events recognised as duplicates or redeliveries.
    duplicates: int = 0


def covisits_of(accepted: Accepted, cfg: CovisitConfig) -> list[Pair]:
    """The co-visits an accepted event makes (none unless it visits an item)."""
    event = accepted.event
    if not is_visit(event):
        return []
    assert event.item_id is not None
    return pairs_for(accepted.recent_before, event.item_id, event.occurred_at, cfg)


def update_batch(
    state_of: Callable[[str], UserState | None],
    events: Sequence[tuple[UserEvent, Position | None]],
    cfg: UserStateConfig,
    covisit: CovisitConfig,
) -> BatchUpdate:
    """Apply a batch; ``state_of(user_id)`` gives each user's current state (or None)."""
    by_user: dict[str, list[tuple[UserEvent, Position | None]]] = {}
    for item in events:
        by_user.setdefault(item[0].user_id, []).append(item)
    out = BatchUpdate()
    for user_id, user_events in by_user.items():
        state, accepted = apply_events(state_of(user_id), user_events, cfg)
        out.duplicates += len(user_events) - len(accepted)
        if not accepted or state is None:
            continue
        out.states[user_id] = state
        out.accepted.extend((a, covisits_of(a, covisit)) for a in accepted)
    return out
