"""How jobs report progress without knowing who draws it.

A job takes a :class:`Steps` (multi-stage work: start, advance, done) or a plain
counter callback; the CLI passes rich progress bars, the demo and tests pass nothing
(:class:`NoSteps`) or a recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Counter", "NoSteps", "Steps"]

#: Called with the number of items just processed.
Counter = Callable[[int], None]


class Steps(Protocol):
    """Progress of a job made of named stages."""

    def start(self, name: str, total: float | None) -> None:
        """A new stage with ``total`` steps (None: unknown)."""

    def advance(self, name: str, n: float = 1) -> None:
        """``n`` more steps of stage ``name``."""

    def done(self, name: str, description: str | None = None) -> None:
        """Stage ``name`` is complete; ``description`` sums it up."""


class NoSteps:
    """Progress nobody watches."""

    def start(self, name: str, total: float | None) -> None:
        """Ignored."""

    def advance(self, name: str, n: float = 1) -> None:
        """Ignored."""

    def done(self, name: str, description: str | None = None) -> None:
        """Ignored."""
