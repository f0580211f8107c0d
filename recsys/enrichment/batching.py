"""Micro-batching: callers submit one item each and get its result; the work runs in
batches bounded by size and by time.

A batch goes as soon as it holds ``max_size`` items, or ``max_wait_s`` after its first
item arrived, or when the owner calls :meth:`MicroBatcher.flush` (it knows nothing more
is coming). Batches run one at a time: the work (embedding) is CPU-bound, and a second
concurrent batch would only compete for the same cores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collects submissions into batches for ``process``."""

    def __init__(
        self,
        process: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_size: int,
        max_wait_s: float,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.process = process
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        #: Sizes of the batches run so far (observability and tests).
        self.batch_sizes: list[int] = []
        #: Wall time spent inside ``process`` so far.
        self.busy_s = 0.0
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` now; the returned future resolves once its batch has run.

        Queuing is synchronous on purpose: the caller can rely on the item being pending
        before it calls :meth:`flush`.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_size:
            self._dispatch()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._dispatch)
        return future

    def flush(self) -> None:
        """Run what is pending now instead of waiting for the time bound."""
        self._dispatch()

    @property
    def pending(self) -> int:
        """Items waiting for a batch."""
        return len(self._pending)

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        async with self._lock:
            self.batch_sizes.append(len(batch))
            started = time.perf_counter()
            try:
                results = await self.process([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
            except asyncio.CancelledError:
                self.busy_s += time.perf_counter() - started
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:
                self.busy_s += time.perf_counter() - started
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            self.busy_s += time.perf_counter() - started
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
