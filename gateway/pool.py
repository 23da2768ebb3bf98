"""A pool of issuer hosts of equal role; pools are tried in priority order."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from gateway.config import GRPC, DeclineStormConfig, OutlierConfig
from gateway.edges.iso8583_issuer import IsoLinks
from gateway.member import Connect, Member, plaintext_channel
from gateway.pool_health import Outcome, PoolHealth

__all__ = ["MemberSpec", "Pool"]

log = logging.getLogger("authgw.pool")


class MemberSpec(NamedTuple):
    """One member as membership gives it."""

    name: str
    address: str
    weight: int
    protocol: str = GRPC


class Pool:
    """Members of one pool, with selection, ejection limits and the pool's health window."""

    def __init__(
        self,
        name: str,
        priority: int,
        attempt_timeout_s: float,
        outlier: OutlierConfig,
        storm: DeclineStormConfig,
        *,
        connect: Connect = plaintext_channel,
        iso: IsoLinks | None = None,
        on_ejected: Callable[[Member], None] = lambda _member: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.connect = connect
        self.iso = iso or IsoLinks()
        self._on_ejected = on_ejected
        self._clock = clock
        self.priority = priority
        self.attempt_timeout_s = attempt_timeout_s
        self.drained = False
        self.health = PoolHealth(storm)
        self._outlier = outlier
        self.members: dict[str, Member] = {}
        self._rng = random.Random()

    def set_members(self, specs: Iterable[MemberSpec]) -> list[Member]:
        """Apply a membership: keep unchanged members (channel, ejection state); return removed ones."""
        wanted = {spec[0]: MemberSpec(*spec) for spec in specs}
        removed = []
        for name, member in list(self.members.items()):
            spec = wanted.get(name)
            if spec is None or (spec.address, spec.protocol) != (member.address, member.protocol):
                removed.append(self.members.pop(name))
            else:
                member.weight = max(1, spec.weight)
        for name, spec in wanted.items():
            if name not in self.members:
                self.members[name] = Member(
                    self.name, name, spec.address, spec.weight, self._outlier, connect=self.connect,
                    protocol=spec.protocol, iso=self.iso, on_failed=self._member_failed,
                )  # fmt: skip
        return removed

    def _member_failed(self, member: Member, reason: str) -> None:
        """A member's own link says it failed (an unanswered ISO 8583 echo): counted like a failed attempt."""
        if self.members.get(member.name) is not member:
            return  # it left the pool meanwhile
        now = self._clock()
        self.health.record(now, Outcome.ERROR)
        if self.may_eject(now) and member.ejection.eject(now):
            log.warning("member %s/%s ejected: %s", self.name, member.name, reason)
            self._on_ejected(member)

    def usable(self, now: float) -> list[Member]:
        return [m for m in self.members.values() if m.ejection.usable(now)]

    def pick(self, now: float, exclude: set[Member]) -> Member | None:
        """Power of two choices among usable members not yet tried, weighted by member weight."""
        candidates = [m for m in self.members.values() if m not in exclude and m.ejection.usable(now)]
        if not candidates:
            return None
        if len(candidates) == 1:
            chosen = candidates[0]
        else:
            weights = [m.weight for m in candidates]
            a, b = self._rng.choices(candidates, weights=weights, k=2)
            chosen = a if a.load() <= b.load() else b
        chosen.ejection.on_pick(now)
        return chosen

    def may_eject(self, now: float) -> bool:
        """Outlier detection alone may not eject more than max_ejection_share of the pool."""
        total = len(self.members)
        if total == 0:
            return False
        ejected = sum(1 for m in self.members.values() if not m.ejection.usable(now))
        return (ejected + 1) / total <= self._outlier.max_ejection_share

    def ejected_count(self, now: float) -> int:
        return sum(1 for m in self.members.values() if m.ejection.ejected_until > now)
