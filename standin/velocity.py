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

Local mode (Redis away): no velocity window (they live in Redis only); the card's local
limits and each gateway's share of the budget still hold.
"""

from __future__ import annotations

from redis.commands.core import AsyncScript

from standin import keys, lua_risk
from standin.policy import Velocity, VelocityLimit
from standin.redis_io import RedisGate
from standin.rules import VELOCITY_CODE, StaticDecline
from standin.types import StandInRequest

__all__ = ["VelocityWindows"]


_NONE = (-1, -1)


def _limits(limit: VelocityLimit | None) -> tuple[int, int]:
    return _NONE if limit is None else (limit.max_count, limit.max_amount_minor)


class VelocityWindows:
    """Admits or declines one request against its merchant's and terminal's windows."""

    def __init__(self, gate: RedisGate, velocity: Velocity) -> None:
        self._gate = gate
        self._velocity = velocity
        self._window_ms = int(velocity.window.total_seconds() * 1000)
        self._script: AsyncScript = gate.redis.register_script(lua_risk.VELOCITY)

    def applies(self, request: StandInRequest) -> bool:
        v = self._velocity
        return request.channel in v.merchant or request.channel in v.terminal

    async def check(self, request: StandInRequest, digest: str, amount_minor: int) -> StaticDecline | None:
        """Count the request in its windows, or return the decline when one is full.

        Args:
            digest: the request's keyed content digest (names it in the windows: a repeat counts once).

        Raises StoreUnavailableError.
        """
        tag = keys.velocity_tag(request.acquirer_id, request.merchant_id)
        script_keys = [
            *keys.merchant_velocity_keys(tag, request.channel),
            *keys.terminal_velocity_keys(tag, request.terminal_id, request.channel),
        ]
        args: list[str | int] = [
            self._window_ms,
            f"{request.request_id}/{digest[:16]}:{amount_minor}",
            amount_minor,
            *_limits(self._velocity.merchant.get(request.channel)),
            *_limits(self._velocity.terminal.get(request.channel)),
        ]

        async def op() -> bytes:
            reply: bytes = await self._script(keys=script_keys, args=args)
            return reply

        rule = await self._gate.call("velocity", op)
        if not rule:
            return None
        return StaticDecline(rule.decode() if isinstance(rule, bytes) else str(rule), VELOCITY_CODE)
