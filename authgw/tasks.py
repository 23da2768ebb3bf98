"""Stopping background tasks: one way for every package, that never eats the caller's cancellation.

    await cancel_and_wait(task)                       # cancel, wait until it has ended
    await stop_then_cancel(task, stop_event, 2.0)     # ask it to stop, give it 2 s, then cancel

The usual idiom, `task.cancel(); with suppress(CancelledError): await task`, has
two faults. `await task` raises CancelledError both when the task ended
cancelled and when the *caller* is being cancelled; suppressing it swallows the
caller's own cancellation, so a shutdown that cancels the closer carries on as if
nothing happened. And one cancel() is not always enough: redis-py 8.1 writes
with asyncio.wait_for, which on Python 3.11 drops a cancellation that lands while
a write completes, and the task carries on. Here the task is waited on with
asyncio.wait (which never raises the task's outcome), cancelled again until it
has ended, and its own exception, if any, is logged rather than lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["cancel_and_wait", "stop_then_cancel"]

log = logging.getLogger("authgw.tasks")

_RECANCEL_S = 0.05


def _report(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background task %s ended with %r", task.get_name(), exc, exc_info=exc)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and return once it has ended; the caller's own cancellation propagates.

    Safe on None and on a task that has already ended (its exception is logged, once).
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_S)
    _report(task)


async def stop_then_cancel(task: asyncio.Task[Any] | None, stop: asyncio.Event, grace_s: float) -> None:
    """Set `stop`, let `task` finish by itself within `grace_s`, then cancel it and wait."""
    stop.set()
    if task is None:
        return
    if not task.done():
        await asyncio.wait({task}, timeout=grace_s)
    await cancel_and_wait(task)
