"""Per-task order: a task's lines go one after another, in file order, never two at once.

A task id is "busy" while one of its lines is held by a worker. A later line for a busy task
waits in that task's pending queue; when the held line finishes, the same worker takes the next
one (`next_for`), so the order is the file's. The pending queues together are bounded
(`max_pending`): the reader waits for room (`wait_for_room`) instead of letting memory grow.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

import anyio

MAX_PENDING = 10_000
"""Lines waiting behind a busy line of their task, all tasks together."""


class HasTask(Protocol):
    @property
    def task_id(self) -> str: ...


T = TypeVar("T", bound=HasTask)


class TaskOrder(Generic[T]):
    """Which task ids are busy, and the lines waiting behind them."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._max_pending = max_pending
        self._busy: set[str] = set()
        self._pending: dict[str, deque[T]] = {}
        self._count = 0
        self._room: anyio.Event | None = None  # made when the reader waits (in the loop)

    @property
    def pending(self) -> int:
        """Lines waiting behind a busy line of their task."""
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self._max_pending

    def admit(self, item: T) -> bool:
        """True: `item`'s task was idle and is now busy, send it. False: it waits its turn."""
        task_id = item.task_id
        if task_id not in self._busy:
            self._busy.add(task_id)
            return True
        self._pending.setdefault(task_id, deque()).append(item)
        self._count += 1
        return False

    def next_for(self, task_id: str) -> T | None:
        """The held line of `task_id` finished: its next line, or None (the task is idle)."""
        queue = self._pending.get(task_id)
        if not queue:
            self._busy.discard(task_id)
            return None
        item = queue.popleft()
        if not queue:
            del self._pending[task_id]
        self._count -= 1
        if self._room is not None:
            self._room.set()
        return item

    async def wait_for_room(self) -> None:
        """Return once fewer than `max_pending` lines wait (wrap in `Stop.until`)."""
        while self.full:
            self._room = anyio.Event()
            await self._room.wait()
