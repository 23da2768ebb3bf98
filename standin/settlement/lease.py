"""Partition leases: at most one settlement worker at a time sends a partition's advices.

A lease is `authgw:{journal:<p>}:settle-lease = <worker>` with a TTL, set only when
absent (SET NX PX, in a script that also lets the holder take it again), renewed by
its holder (compare-and-PEXPIRE) every ttl/4 and deleted (compare-and-DEL) on a
clean close. A worker that dies stops renewing; after at most `ttl` another worker
acquires the lease and claims the dead holder's pending entries.

The holder also keeps a local view of how long the lease is surely its own (the
time of the last successful renewal plus ttl, on its monotonic clock): it sends an
advice only when that advice's whole deadline fits inside, so a worker that was
frozen (SIGSTOP, a long GC pause, a partition from Redis) stops by itself rather
than racing the new holder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from redis.commands.core import AsyncScript

from standin.redis_io import RedisGate
from standin.settlement.keys import lease_key

__all__ = ["PartitionLeases"]

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class PartitionLeases:
    """The partition leases one worker holds."""

    def __init__(
        self, gate: RedisGate, worker_id: str, ttl: timedelta, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._gate = gate
        self.worker_id = worker_id
        self._ttl_ms = int(ttl / timedelta(milliseconds=1))
        self._ttl_s = ttl.total_seconds()
        self._clock = clock
        self._acquire: AsyncScript = gate.redis.register_script(_ACQUIRE)
        self._renew: AsyncScript = gate.redis.register_script(_RENEW)
        self._release: AsyncScript = gate.redis.register_script(_RELEASE)
        self.valid_until: dict[int, float] = {}
        """Partition -> monotonic time until which the lease is surely this worker's."""

    def held(self) -> list[int]:
        return sorted(self.valid_until)

    def valid_for(self, partition: int, margin_s: float) -> bool:
        """Is the lease of `partition` ours for at least `margin_s` more seconds?"""
        return self._clock() + margin_s < self.valid_until.get(partition, 0.0)

    async def acquire(self, partition: int) -> bool:
        """Take the lease if nobody holds it (or we still do). Raises StoreUnavailableError."""
        started = self._clock()

        async def op() -> int:
            reply: int = await self._acquire(keys=[lease_key(partition)], args=[self.worker_id, self._ttl_ms])
            return reply

        if await self._gate.call("lease acquire", op) != 1:
            return False
        self.valid_until[partition] = started + self._ttl_s
        return True

    async def renew(self, partition: int) -> bool:
        """Extend a lease we hold; False (and forgotten) when it is no longer ours."""
        started = self._clock()

        async def op() -> int:
            reply: int = await self._renew(keys=[lease_key(partition)], args=[self.worker_id, self._ttl_ms])
            return reply

        if await self._gate.call("lease renew", op) != 1:
            self.valid_until.pop(partition, None)
            return False
        self.valid_until[partition] = started + self._ttl_s
        return True

    async def release(self, partition: int) -> None:
        """Give a lease up now (clean shutdown), so another worker need not wait for it to expire."""
        self.valid_until.pop(partition, None)

        async def op() -> int:
            reply: int = await self._release(keys=[lease_key(partition)], args=[self.worker_id])
            return reply

        await self._gate.call("lease release", op)

    async def holder(self, partition: int) -> str | None:
        """Who holds the lease of `partition` now."""

        async def op() -> bytes | str | None:
            value: bytes | str | None = await self._gate.redis.get(lease_key(partition))
            return value

        value = await self._gate.call("lease holder", op)
        return value.decode() if isinstance(value, bytes) else value
