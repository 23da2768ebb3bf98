"""The issuer's last reported available balance per card, kept in the card's slot for stand-in.

An issuer answer may carry the card's available balance after the transaction (the contract's
`available_balance_minor`, ISO 8583 field 54). The gateway hands it here off the answer's path
(gateway/balance_feed.py); BALANCE_SET (lua.py) stores it under the card's token with Redis's time
and resets `spent`. While the hash lives (`BalanceSettings.ttl`), DECIDE approves at most
`available - spent` in that currency (51, rule `balance.available`) on top of the policy's limits,
and adds each stand-in approval to `spent`. A card never seen, a balance expired, or a transaction
in another currency keeps the policy's limits only. Reversals of stand-in approvals do not give
`spent` back: a stale figure can only decline, never approve more than the issuer reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from redis.commands.core import AsyncScript

from standin import keys, lua
from standin.redis_io import RedisGate

__all__ = ["BALANCE_RULE", "BalanceSettings", "CardBalances"]

BALANCE_RULE = "balance.available"

_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class BalanceSettings:
    """Balances the issuer reports (`[balance]` of the stand-in file)."""

    ttl: timedelta = timedelta(hours=24)
    """How long a reported balance caps stand-in approvals; older, the card has the policy's limits."""
    queue_size: int = 10_000
    """Balances waiting to be written (the gateway's queue); past it new ones are dropped and counted."""


class CardBalances:
    """Writes the last balance an issuer reported for a card (one script, the card's slot)."""

    def __init__(self, gate: RedisGate, settings: BalanceSettings) -> None:
        self._gate = gate
        self._ttl_ms = int(settings.ttl / _MS)
        self._script: AsyncScript = gate.redis.register_script(lua.BALANCE_SET)

    async def remember(self, token: str, available_minor: int, currency: str) -> None:
        """Store the balance (raises StoreUnavailableError)."""
        args: list[str | int] = [available_minor, currency, self._ttl_ms]

        async def op() -> int:
            reply: int = await self._script(keys=[keys.balance_key(token)], args=args)
            return reply

        await self._gate.call("balance", op)
