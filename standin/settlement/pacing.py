"""Pacing of advices: a rate limit that follows the issuer, and a pause when it stops answering.

A recovering issuer must not be flattened by the backlog of a two-hour outage, so
advices leave at most at `rate_per_s`. The rate adapts AIMD-style, once per pacing
window: a window whose mean latency passes `latency_target`, or whose share of
failed advices passes `error_threshold`, halves the rate (never below
`min_rate_per_s`); a good window adds a tenth of the ceiling back. A rejection is
an answer, so it counts as a healthy reply here (the issuer is up; it is the
advice it does not like).

`Pacer.acquire` spaces sends evenly (a virtual schedule, GCRA-style) and lets a
burst of one pacing window's worth through after an idle spell, so many
concurrent senders share one rate without a lock.

`Pause` is the breaker: `pause_after_failures` consecutive advices without an answer
stop settlement for `pause`, doubling while the trial that follows fails, up to
`pause_max`; one answered advice closes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from standin.settlement.settings import SettlementSettings

__all__ = ["Pacer", "Pause"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

_MIN_SLEEP_S = 0.001


class Pacer:
    """Shared rate limit of one worker's advices, adapted to the issuer's latency and errors."""

    def __init__(self, settings: SettlementSettings, clock: Clock = time.monotonic) -> None:
        self.max_rate = settings.rate_per_s
        self.min_rate = settings.min_rate_per_s
        self.rate = settings.rate_per_s
        self._target_s = settings.latency_target.total_seconds()
        self._threshold = settings.error_threshold
        self._window_s = settings.pacing_window.total_seconds()
        self._clock = clock
        self._next_at = clock()
        self._window_end = self._next_at + self._window_s
        self._answered = 0
        self._failed = 0
        self._latency_sum_s = 0.0
        self.backoffs = 0
        """How many times the rate was halved (for status and tests)."""

    async def acquire(self) -> None:
        """Wait for this advice's turn."""
        wait_s = self.reserve() - self._clock()
        if wait_s > _MIN_SLEEP_S:  # below that a timer costs more than the spacing is worth
            await asyncio.sleep(wait_s)

    def reserve(self) -> float:
        """The clock time of the next advice's turn, taken (`acquire` sleeps until it)."""
        now = self._clock()
        self._adjust(now)
        slot = max(self._next_at, now - self._window_s / 4)  # a small burst after an idle spell
        self._next_at = slot + 1.0 / self.rate
        return slot

    def record(self, latency_s: float, answered: bool) -> None:
        """One advice's latency, and whether the issuer answered at all."""
        if answered:
            self._answered += 1
            self._latency_sum_s += latency_s
        else:
            self._failed += 1
        self._adjust(self._clock())

    def _adjust(self, now: float) -> None:
        if now < self._window_end:
            return
        total = self._answered + self._failed
        old_rate = self.rate
        if total:
            error_share = self._failed / total
            mean_s = self._latency_sum_s / self._answered if self._answered else 0.0
            if error_share > self._threshold or mean_s > self._target_s:
                new = max(self.min_rate, self.rate / 2)
                if new < self.rate:
                    self.backoffs += 1
                    log.warning(
                        "issuer strained (%.0f%% failed, mean %.0f ms): advices slowed to %.0f/s",
                        error_share * 100,
                        mean_s * 1000,
                        new,
                    )
                self.rate = new
            elif self.rate < self.max_rate:
                self.rate = min(self.max_rate, self.rate + self.max_rate / 10)
            self._rescale(now, old_rate)
        self._answered = self._failed = 0
        self._latency_sum_s = 0.0
        self._window_end = now + self._window_s

    def _rescale(self, now: float, old_rate: float) -> None:
        """Turns already given out stay; the queue of them is re-spaced at the new rate.

        The schedule ahead of `now` holds (next_at - now) * old_rate turns: at the new rate they
        take (next_at - now) * old_rate / new_rate. Without this, turns taken at a slow rate push
        every later advice back by their slow spacing after the issuer has recovered.
        """
        if self.rate != old_rate and self._next_at > now:
            self._next_at = now + (self._next_at - now) * old_rate / self.rate


class Pause:
    """Stops settlement after consecutive unanswered advices; one answered advice ends it."""

    def __init__(self, settings: SettlementSettings, clock: Clock = time.monotonic) -> None:
        self._after = settings.pause_after_failures
        self._first_s = settings.pause.total_seconds()
        self._max_s = settings.pause_max.total_seconds()
        self._clock = clock
        self._consecutive = 0
        self._next_s = self._first_s
        self.until = 0.0
        self.pauses = 0
        """How many times settlement was paused (for status and tests)."""

    def active(self) -> bool:
        return self._clock() < self.until

    @property
    def tripped(self) -> bool:
        """Paused at least once since the last answered advice (the next send is a trial)."""
        return self._consecutive >= self._after

    def answered(self) -> None:
        if self._consecutive >= self._after:
            log.info("issuer answers again: settlement resumes")
        self._consecutive = 0
        self._next_s = self._first_s

    def failed(self) -> None:
        self._consecutive += 1
        if self._consecutive >= self._after and not self.active():
            self.until = self._clock() + self._next_s
            self.pauses += 1
            log.warning(
                "%d advices in a row without an answer: settlement paused for %.1f s",
                self._consecutive,
                self._next_s,
            )
            self._next_s = min(self._next_s * 2, self._max_s)

    def remaining(self) -> timedelta:
        return timedelta(seconds=max(0.0, self.until - self._clock()))
