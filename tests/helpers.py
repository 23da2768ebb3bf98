"""Shared test helpers: eventual assertions and request builders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Luhn-valid test PANs (public test numbers).
PAN_VISA = "4111111111111111"
PAN_MC = "5555555555554444"
PAN_AMEX = "378282246310005"


async def assert_eventually(
    check: Callable[[], Awaitable[T]] | Callable[[], T],
    timeout_s: float = 5.0,
    interval_s: float = 0.05,
) -> T:
    """Retry `check` until it returns without AssertionError; re-raise the last one at timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            return result  # type: ignore[return-value]
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval_s)
