"""Errors of the local stack; all derive from :class:`recsys.exceptions.StreamrecError`."""

from __future__ import annotations

from recsys.exceptions import StreamrecError

__all__ = ["GaveUp"]


class GaveUp(StreamrecError):
    """A supervised process (a worker, the embedded broker or Postgres) keeps failing:
    restarting it again would only hide the fault, so the stack stops."""
