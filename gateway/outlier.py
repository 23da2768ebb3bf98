"""Outlier ejection of one pool member (Envoy-style consecutive-failure detection).

HEALTHY --N consecutive failures--> EJECTED --ejection time over--> HALF_OPEN
HALF_OPEN admits a single trial request: success -> HEALTHY, failure -> EJECTED
again for twice as long (capped). The ejection multiplier resets after the member
has stayed healthy for max_ejection_s, so an old incident does not haunt it.
"""

from __future__ import annotations

import enum

from gateway.config import OutlierConfig

__all__ = ["Ejection", "EjectionState"]


class EjectionState(enum.Enum):
    HEALTHY = "healthy"
    EJECTED = "ejected"
    HALF_OPEN = "half_open"


class Ejection:
    """Ejection bookkeeping of one member; all methods take `now` (monotonic seconds)."""

    __slots__ = ("_cfg", "consecutive", "ejected_until", "ejections", "healthy_since", "trial_in_flight")

    def __init__(self, cfg: OutlierConfig) -> None:
        self._cfg = cfg
        self.consecutive = 0
        self.ejections = 0  # drives the doubling of the ejection time
        self.ejected_until = 0.0
        self.trial_in_flight = False
        self.healthy_since = 0.0

    def state(self, now: float) -> EjectionState:
        if self.ejected_until == 0.0:
            return EjectionState.HEALTHY
        if now < self.ejected_until:
            return EjectionState.EJECTED
        return EjectionState.HALF_OPEN

    def usable(self, now: float) -> bool:
        """May a request be sent to this member now?"""
        if self.ejected_until == 0.0:
            return True
        return now >= self.ejected_until and not self.trial_in_flight

    def on_pick(self, now: float) -> None:
        if self.ejected_until != 0.0 and now >= self.ejected_until:
            self.trial_in_flight = True

    def on_success(self, now: float) -> None:
        self.consecutive = 0
        if self.ejected_until != 0.0:
            if now < self.ejected_until:
                return  # a request sent before the ejection: the verdict stands until the trial
            self.ejected_until = 0.0
            self.trial_in_flight = False
            self.healthy_since = now
        elif self.ejections and now - self.healthy_since > self._cfg.max_ejection_s:
            self.ejections = 0

    def on_failure(self, now: float, may_eject: bool) -> bool:
        """Record a failure; return True when this failure ejected the member."""
        self.consecutive += 1
        half_open = self.ejected_until != 0.0
        if half_open:
            if now < self.ejected_until:
                return False  # a straggler sent before the ejection: already counted
            self.trial_in_flight = False
        if not half_open and (self.consecutive < self._cfg.consecutive_failures or not may_eject):
            return False
        self.ejections += 1
        duration = min(self._cfg.base_ejection_s * 2 ** (self.ejections - 1), self._cfg.max_ejection_s)
        self.ejected_until = now + duration
        return True

    def eject(self, now: float) -> bool:
        """An outside verdict that the member failed (it left an ISO 8583 echo unanswered): eject it now.

        Returns True when this ejected it (False when it already was).
        """
        if now < self.ejected_until:
            return False
        self.consecutive = max(self.consecutive, self._cfg.consecutive_failures - 1)
        return self.on_failure(now, True)

    def reset(self) -> None:
        """Healthy again by an outside verdict (health probes); the doubling memory is kept."""
        self.consecutive = 0
        self.ejected_until = 0.0
        self.trial_in_flight = False

    def on_abandon(self) -> None:
        """A picked trial was not sent after all (deadline, budget): free the trial slot."""
        self.trial_in_flight = False
