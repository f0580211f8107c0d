"""A user's recently visited items: distinct, newest first, bounded.

One definition shared by the user state (``UserState.recent_items``, session items) and
the offline co-visitation model, so that the nearline co-visitation computed by the
``users`` worker from the state equals the one computed offline from the same log.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["RecentList", "push_recent"]

#: ``(item_id, visited_at)`` pairs, newest first.
RecentList = list[tuple[str, datetime]]


def push_recent(items: RecentList, item: str, at: datetime, limit: int) -> RecentList:
    """A new list with ``item`` visited at ``at`` (the input is not changed).

    The item appears once, at the position its time gives (an out-of-order visit lands
    behind newer ones; ties go in front, arrival order breaks them); a visit older than
    one already recorded for the item changes nothing. At most ``limit`` items are kept.
    """
    out = items
    for i, (existing, when) in enumerate(items):
        if existing == item:
            if when >= at:
                return items
            out = items[:i] + items[i + 1 :]
            break
    pos = 0
    if out and out[0][1] > at:
        pos = next((i for i, (_, when) in enumerate(out) if when <= at), len(out))
    if pos >= limit:
        return out[:limit]
    return [*out[:pos], (item, at), *out[pos : limit - 1]]
