"""Fraud velocity: many stand-in requests at one merchant or terminal in a short window.

Criminals who learn that a bank is in stand-in test many cards at one merchant. Each
merchant has a sliding window per channel, and each of its terminals one too (the
policy's `[policy.velocity]`): the number of stand-in requests and their amount. A
request that would pass either is declined 05 with rule velocity.merchant.count,
velocity.merchant.amount, velocity.terminal.count or velocity.terminal.amount, and is not
counted (the windows count requests admitted, declined later by the card's rules or not:
a card-testing attack is mostly declines).

Cluster: a merchant's windows and its terminals' share one slot of their own (keys.py),
so the step is one script, one round trip, before the budget's reserve and the card's
DECIDE. A repeated request (same acquirer and request id) is admitted again and counted
once. A lost reply may have counted the request: it is left to expire with the window
(over-counting is the safe side of a fraud window), and the engine decides locally.

The limits are the live policy's (policy_live.py), read with the rest of the decision's
policy (Assessment.velocity): a new version applies to the next request. A shorter window
drops older members at the next request; a longer one counts only what the shorter one kept.

On a Cluster the script is followed by WAIT on its own connection (redis_durable.py), like
the card's DECIDE: a request counted on a master only (a failover may lose it) is a lost
reply, and the engine decides locally.

Local mode (Redis away): each gateway keeps its own windows in memory (LocalVelocity),
each of them LocalSettings.limit_fraction of the policy's (count and amount, rounded
down), like the card limits: a merchant attacking through N gateways deciding locally
gets at most limit x limit_fraction x N. They are not moved to Redis when it is back
(they cover the outage of Redis only) and a restarted gateway starts them empty.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from standin import keys, lua_risk
from standin.policy import Velocity, VelocityLimit
from standin.redis_io import RedisGate
from standin.rules import VELOCITY_CODE, StaticDecline
from standin.types import StandInRequest

__all__ = ["LocalVelocity", "VelocityWindows", "applies"]


_NONE = (-1, -1)


def _limits(limit: VelocityLimit | None) -> tuple[int, int]:
    return _NONE if limit is None else (limit.max_count, limit.max_amount_minor)


def applies(velocity: Velocity, request: StandInRequest) -> bool:
    """Whether `velocity` has a window for the request's channel."""
    return request.channel in velocity.merchant or request.channel in velocity.terminal


def _member(request: StandInRequest, digest: str, amount_minor: int) -> str:
    return f"{request.request_id}/{digest[:16]}:{amount_minor}"


class VelocityWindows:
    """Admits or declines one request against its merchant's and terminal's windows, in Redis."""

    def __init__(self, gate: RedisGate) -> None:
        self._gate = gate
        self._script = gate.script(lua_risk.VELOCITY)

    async def check(
        self, request: StandInRequest, digest: str, amount_minor: int, velocity: Velocity
    ) -> StaticDecline | None:
        """Count the request in its windows, or return the decline when one is full.

        Args:
            digest: the request's keyed content digest (names it in the windows: a repeat counts once).
            velocity: the windows of the policy deciding this request.

        Raises StoreUnavailableError.
        """
        tag = keys.velocity_tag(request.acquirer_id, request.merchant_id)
        script_keys = [
            *keys.merchant_velocity_keys(tag, request.channel),
            *keys.terminal_velocity_keys(tag, request.terminal_id, request.channel),
        ]
        args: list[str | int] = [
            int(velocity.window.total_seconds() * 1000),
            _member(request, digest, amount_minor),
            amount_minor,
            *_limits(velocity.merchant.get(request.channel)),
            *_limits(velocity.terminal.get(request.channel)),
        ]

        async def op() -> bytes:
            reply: bytes = await self._script(keys=script_keys, args=args)
            return reply

        rule = await self._gate.call("velocity", op)
        if not rule:
            return None
        return StaticDecline(rule.decode() if isinstance(rule, bytes) else str(rule), VELOCITY_CODE)


@dataclass(slots=True)
class _Window:
    """One local sliding window: (time ms, member, amount) oldest first, and their sum."""

    entries: collections.deque[tuple[int, str, int]] = field(default_factory=collections.deque)
    members: set[str] = field(default_factory=set)
    total: int = 0

    def expire(self, cutoff_ms: int) -> None:
        while self.entries and self.entries[0][0] <= cutoff_ms:
            _, member, amount = self.entries.popleft()
            self.members.discard(member)
            self.total -= amount

    def full(self, limit: VelocityLimit, fraction: float, amount: int) -> str:
        """'count' or 'amount' when one more request of `amount` would pass this gateway's share."""
        if len(self.entries) + 1 > int(limit.max_count * fraction):
            return "count"
        if self.total + amount > int(limit.max_amount_minor * fraction):
            return "amount"
        return ""

    def add(self, now_ms: int, member: str, amount: int) -> None:
        self.entries.append((now_ms, member, amount))
        self.members.add(member)
        self.total += amount


class LocalVelocity:
    """This gateway's own velocity windows while Redis is away (the module docstring)."""

    SWEEP_EVERY = 10_000
    """Requests between two sweeps dropping windows with nothing left in them (bounded memory)."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, ...], _Window] = {}
        self._since_sweep = 0

    def check(
        self,
        request: StandInRequest,
        digest: str,
        amount_minor: int,
        velocity: Velocity,
        *,
        fraction: float,
        now_ms: int,
    ) -> StaticDecline | None:
        """Count the request in this gateway's windows (each `fraction` of the policy's), or decline."""
        cutoff = now_ms - int(velocity.window.total_seconds() * 1000)
        member = _member(request, digest, amount_minor)
        place = (request.acquirer_id, request.merchant_id, request.channel.value)
        scopes = [
            (scope, key, limit)
            for scope, key, limit in (
                ("merchant", place, velocity.merchant.get(request.channel)),
                ("terminal", (*place, request.terminal_id), velocity.terminal.get(request.channel)),
            )
            if limit is not None
        ]
        windows = []
        for scope, key, limit in scopes:
            window = self._windows.setdefault(key, _Window())
            window.expire(cutoff)
            if member in window.members:
                return None  # a repeat: admitted again, counted once
            full = window.full(limit, fraction, amount_minor)
            if full:
                return StaticDecline(f"velocity.{scope}.{full}", VELOCITY_CODE)
            windows.append(window)
        for window in windows:
            window.add(now_ms, member, amount_minor)
        self._sweep(cutoff)
        return None

    def _sweep(self, cutoff_ms: int) -> None:
        self._since_sweep += 1
        if self._since_sweep < self.SWEEP_EVERY:
            return
        self._since_sweep = 0
        for key, window in list(self._windows.items()):
            window.expire(cutoff_ms)
            if not window.entries:
                del self._windows[key]
