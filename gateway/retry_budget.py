"""Retry budget: retries in flight stay a small share of requests in flight.

Envoy's answer to retry storms: a dying issuer is not hit by a second wave of
every request it just failed. A retry here is any attempt after a request's
first one, on another member or pool.
"""

from __future__ import annotations

__all__ = ["RetryBudget"]


class RetryBudget:
    """Counts requests and retries in flight; `try_acquire` admits a retry or not."""

    __slots__ = ("_min", "_ratio", "denied", "requests_in_flight", "retries_in_flight")

    def __init__(self, ratio: float, min_concurrent: int) -> None:
        self._ratio = ratio
        self._min = min_concurrent
        self.requests_in_flight = 0
        self.retries_in_flight = 0
        self.denied = 0

    def request_started(self) -> None:
        self.requests_in_flight += 1

    def request_finished(self) -> None:
        self.requests_in_flight -= 1

    def try_acquire(self) -> bool:
        allowed = max(self._min, self._ratio * self.requests_in_flight)
        if self.retries_in_flight + 1 > allowed:
            self.denied += 1
            return False
        self.retries_in_flight += 1
        return True

    def release(self) -> None:
        self.retries_in_flight -= 1
