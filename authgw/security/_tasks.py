"""One owned task that runs a coroutine every interval, from start() to close()."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from authgw.security.errors import ClosedError

__all__ = ["Periodic"]


class Periodic:
    """Awaits `tick()` every `interval_s` in a task of its own; close() cancels it and waits for it."""

    def __init__(self, tick: Callable[[], Awaitable[object]], interval_s: float, name: str) -> None:
        self._tick = tick
        self._interval_s = interval_s
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        """True between start() and close()."""
        return self._task is not None

    def check_open(self) -> None:
        """Raise ClosedError once closed: owners are not restarted, they are rebuilt."""
        if self._closed:
            raise ClosedError(f"{self._name} is closed")

    def start(self) -> None:
        """Start ticking (the first tick after one interval); a second call does nothing."""
        self.check_open()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        """Stop ticking, cancelling a tick in progress; safe to call twice."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Our task ended as asked; if the caller itself is being cancelled, that goes on up.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self._tick()
