"""Pool-level failure detection: decline storms and failing pools over a sliding window.

A host that answers, but answers wrong (a storm of 91/96, or 05 far above its
normal rate), stopped a bank's cards for two hours; per-member outlier
detection alone does not catch a whole pool doing it. Each pool keeps counts of
its recent outcomes in time buckets; when the bad share passes the threshold
(with enough samples), or when `consecutive_failures` errors or system declines
come in a row (a sudden total failure, which a window still full of good
answers would take seconds to see), the pool is marked failing and skipped for a cool-off,
after which it gets a single trial request (half-open), like a member; each
failed trial doubles the cool-off, so a dead pool costs few customer requests.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.config import DeclineStormConfig

__all__ = ["Outcome", "PoolHealth", "PoolVerdict"]

_BUCKETS = 20
_MAX_COOLOFF_FACTOR = 8  # a pool failing trial after trial is tried at most every 8 cool-offs


class Outcome(enum.IntEnum):
    """What one attempt on a pool gave, as the window counts it."""

    GOOD = 0  # an answer that is not a system decline (00, 51, 05 within baseline, ...)
    DECLINE_05 = 1  # "do not honour": normal in small numbers
    SYSTEM_DECLINE = 2  # 91 or 96 answered by the host
    ERROR = 3  # timeout, UNAVAILABLE, any RPC error


class PoolVerdict(enum.Enum):
    OK = "ok"
    DECLINE_STORM = "decline_storm"  # answers, but bad answers dominate
    FAILING = "failing"  # errors and timeouts dominate


@dataclass(slots=True)
class _Bucket:
    index: int = -1
    total: int = 0
    declines_05: int = 0
    system: int = 0
    errors: int = 0


class PoolHealth:
    """Sliding-window verdict of one pool; all methods take `now` (monotonic seconds)."""

    def __init__(self, cfg: DeclineStormConfig) -> None:
        self._cfg = cfg
        self._width = cfg.window_s / _BUCKETS
        self._buckets = [_Bucket() for _ in range(_BUCKETS)]
        self.verdict = PoolVerdict.OK
        self.failing_until = 0.0
        self.trial_in_flight = False
        self._cooloff = cfg.cooloff_s  # doubles on each failed trial, up to _MAX_COOLOFF_FACTOR x
        self.consecutive_bad = 0  # errors and 91/96 in a row, whatever the window says

    def _bucket(self, now: float) -> _Bucket:
        index = int(now / self._width)
        b = self._buckets[index % _BUCKETS]
        if b.index != index:
            b.index, b.total, b.declines_05, b.system, b.errors = index, 0, 0, 0, 0
        return b

    def record(self, now: float, outcome: Outcome) -> None:
        """Count one outcome; may change the verdict."""
        if self.verdict is not PoolVerdict.OK:
            self.trial_in_flight = False
            if outcome is Outcome.GOOD:
                self.reset()  # the trial answered well: back in routing with a clean window
            elif now >= self.failing_until:
                self._cooloff = min(self._cooloff * 2, self._cfg.cooloff_s * _MAX_COOLOFF_FACTOR)
                self.failing_until = now + self._cooloff
            return
        b = self._bucket(now)
        b.total += 1
        if outcome is Outcome.DECLINE_05:
            b.declines_05 += 1
        elif outcome is Outcome.SYSTEM_DECLINE:
            b.system += 1
        elif outcome is Outcome.ERROR:
            b.errors += 1
        if outcome is Outcome.ERROR or outcome is Outcome.SYSTEM_DECLINE:
            self.consecutive_bad += 1
            if self.consecutive_bad >= self._cfg.consecutive_failures:
                # a sudden total failure: the window still full of good answers would take seconds
                self._fail(
                    now,
                    PoolVerdict.DECLINE_STORM if outcome is Outcome.SYSTEM_DECLINE else PoolVerdict.FAILING,
                )
                return
        else:
            self.consecutive_bad = 0
        if outcome is not Outcome.GOOD:
            self._evaluate(now)

    def _evaluate(self, now: float) -> None:
        oldest = int(now / self._width) - _BUCKETS + 1
        total = d05 = system = errors = 0
        for b in self._buckets:
            if b.index >= oldest:
                total += b.total
                d05 += b.declines_05
                system += b.system
                errors += b.errors
        if total < self._cfg.min_requests:
            return
        excess_05 = max(0.0, d05 - self._cfg.baseline_05 * total)
        declines = system + excess_05
        if (declines + errors) / total < self._cfg.threshold:
            return
        self._fail(now, PoolVerdict.DECLINE_STORM if declines >= errors else PoolVerdict.FAILING)

    def _fail(self, now: float, verdict: PoolVerdict) -> None:
        self.verdict = verdict
        self.failing_until = now + self._cooloff

    def reset(self) -> None:
        """Back to OK with an empty window."""
        self.verdict = PoolVerdict.OK
        self.failing_until = 0.0
        self._cooloff = self._cfg.cooloff_s
        self.consecutive_bad = 0
        for b in self._buckets:
            b.index = -1

    def admits(self, now: float) -> bool:
        """May this pool receive a request now (OK, or a half-open trial is due)?"""
        if self.verdict is PoolVerdict.OK:
            return True
        return now >= self.failing_until and not self.trial_in_flight

    def on_pick(self, now: float) -> None:
        if self.verdict is not PoolVerdict.OK and now >= self.failing_until:
            self.trial_in_flight = True

    def on_abandon(self) -> None:
        self.trial_in_flight = False
