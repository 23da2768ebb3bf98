"""A pool of issuer hosts of equal role; pools are tried in priority order."""

from __future__ import annotations

import random
from collections.abc import Iterable

from gateway.config import DeclineStormConfig, OutlierConfig
from gateway.member import Connect, Member, plaintext_channel
from gateway.pool_health import PoolHealth

__all__ = ["MemberSpec", "Pool"]

MemberSpec = tuple[str, str, int]  # (name, address, weight)


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
    ) -> None:
        self.name = name
        self.connect = connect
        self.priority = priority
        self.attempt_timeout_s = attempt_timeout_s
        self.drained = False
        self.health = PoolHealth(storm)
        self._outlier = outlier
        self.members: dict[str, Member] = {}
        self._rng = random.Random()

    def set_members(self, specs: Iterable[MemberSpec]) -> list[Member]:
        """Apply a membership: keep unchanged members (channel, ejection state); return removed ones."""
        wanted = {name: (address, weight) for name, address, weight in specs}
        removed = []
        for name, member in list(self.members.items()):
            spec = wanted.get(name)
            if spec is None or spec[0] != member.address:
                removed.append(self.members.pop(name))
            else:
                member.weight = max(1, spec[1])
        for name, (address, weight) in wanted.items():
            if name not in self.members:
                self.members[name] = Member(
                    self.name, name, address, weight, self._outlier, connect=self.connect
                )
        return removed

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
