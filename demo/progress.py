"""How the demo draws the progress of the jobs it runs, without knowing who draws it.

The CLI passes a factory of rich progress bars (``cli.common.transient_steps``); tests
and other callers get :func:`no_steps`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from jobs.progress import NoSteps, Steps

__all__ = ["StepsFactory", "no_steps"]

#: ``factory(label)`` → a context manager yielding the :class:`Steps` of one job.
StepsFactory = Callable[[str], AbstractContextManager[Steps]]


@contextmanager
def no_steps(label: str) -> Iterator[Steps]:
    """Progress nobody watches."""
    yield NoSteps()
