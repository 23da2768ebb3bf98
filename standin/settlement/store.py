"""Settlement's Redis side: read a partition through the consumer group, record what the issuer has.

Reading, per partition, oldest first:
  1. `XAUTOCLAIM 0-0 min-idle 0`: every entry delivered to some worker of the group and never
     acknowledged (a dead worker's, or our own that failed). Only the lease holder reads, so
     claiming at idle 0 is safe: the idle time a dead holder's entries wait is the lease TTL.
  2. only when nothing is pending, `XREADGROUP >`: new entries.
Pending entries are older than any new one, so reading them first keeps each card's order.
Both run in a script that returns each entry as one JSON array: redis-py's pure-Python
parser costs ~50 µs per entry of ~30 fields read natively, more than sending the advice.
Only when the stream is drained does a plain blocking XREADGROUP wait (up to `block`) for
the next decisions, which arrive a few at a time.

Recording is one script per batch in the partition's slot (settle_keys.py), so it happens
whole or not at all:
  SETTLE  XACK + XDEL each entry the issuer acknowledged, HSETNX its settled record and,
          only when that record is new, add it to the per-gateway counters: running it twice
          (a crash before the reply) changes nothing.
  DEAD    move entries to the dead-letter stream with their last error (XACK + XDEL + XADD),
          only those still pending, so no entry is dead-lettered twice.
Both refuse (return -1) when another worker holds the partition's lease: a worker that lost
its lease leaves the entries to the new holder, which sends them again (the issuer dedupes).
Settled entries are deleted from the stream, which therefore holds exactly the unsettled
backlog; the settled records keep what reconcile needs.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from standin.errors import StoreUnavailableError
from standin.redis_io import RedisGate
from standin.settlement.keys import WORKERS_KEY, counts_key, dead_key, lease_key, settled_key, stream_key

__all__ = ["DeadLetter", "LeaseLostError", "RawEntry", "SettleStore", "Settled"]

_READ = """
-- KEYS[1] stream  ARGV[1] group  ARGV[2] consumer  ARGV[3] count  ARGV[4] 'pending' | 'new'
local entries
if ARGV[4] == 'pending' then
  entries = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, '0-0', 'COUNT', ARGV[3])[2]
else
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
  if not reply then return {} end
  entries = reply[1][2]
end
local out = {}
for _, e in ipairs(entries) do
  out[#out + 1] = e[1]
  out[#out + 1] = cjson.encode(e[2])
end
return out
"""

_SETTLE = """
-- KEYS[1] stream  KEYS[2] settled  KEYS[3] counts  KEYS[4] lease
-- ARGV[1] group  ARGV[2] worker id  ARGV[3] settler  ARGV[4] now_ms
-- ARGV[5] JSON [[stream_id, decision_id, approved, amount, currency, decider, how], ...]
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[2] then return -1 end
local fresh = 0
for _, e in ipairs(cjson.decode(ARGV[5])) do
  redis.call('XACK', KEYS[1], ARGV[1], e[1])
  redis.call('XDEL', KEYS[1], e[1])
  local record = table.concat({e[3], e[4], e[5], e[6], ARGV[3], ARGV[4], e[7]}, '|')
  if redis.call('HSETNX', KEYS[2], e[2], record) == 1 then
    fresh = fresh + 1
    local outcome = 'declined'
    if e[3] == '1' then outcome = 'approved' end
    for _, who in ipairs({'decider:' .. e[6], 'settler:' .. ARGV[3]}) do
      redis.call('HINCRBY', KEYS[3], who .. '|' .. outcome .. '|count', 1)
      redis.call('HINCRBY', KEYS[3], who .. '|' .. outcome .. '|' .. e[5], e[4])
    end
  end
end
return fresh
"""

_DEAD = """
-- KEYS[1] stream  KEYS[2] dead letters  KEYS[3] lease
-- ARGV[1] group  ARGV[2] worker id  ARGV[3] JSON [[stream_id, [field, value, ...]], ...]
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[2] then return -1 end
local moved = 0
for _, e in ipairs(cjson.decode(ARGV[3])) do
  if redis.call('XACK', KEYS[1], ARGV[1], e[1]) == 1 then
    redis.call('XADD', KEYS[2], '*', unpack(e[2]))
    redis.call('XDEL', KEYS[1], e[1])
    moved = moved + 1
  end
end
return moved
"""


class LeaseLostError(StoreUnavailableError):
    """Another worker holds the partition now: what this worker did is left for it to redo."""


@dataclass(frozen=True, slots=True)
class RawEntry:
    """A journal entry as read from its stream: id and text fields."""

    stream_id: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Settled:
    """A journal entry the issuer has: acknowledged now ("acked"), before ("duplicate"), or on record."""

    stream_id: str
    decision_id: str
    approved: bool
    amount_minor: int
    currency: str
    decided_by: str
    how: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A journal entry given up on for now, with why."""

    stream_id: str
    fields: dict[str, str]
    error: str
    attempts: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json_entries(flat: Sequence[bytes]) -> list[RawEntry]:
    out: list[RawEntry] = []
    for i in range(0, len(flat), 2):
        items = json.loads(flat[i + 1])
        out.append(RawEntry(_text(flat[i]), dict(zip(items[::2], items[1::2], strict=True))))
    return out


def _entries(raw: Sequence[Any]) -> list[RawEntry]:
    out: list[RawEntry] = []
    for stream_id, fields in raw:
        if fields is None:  # deleted while pending (Redis < 7 reports it this way)
            continue
        out.append(RawEntry(_text(stream_id), {_text(k): _text(v) for k, v in fields.items()}))
    return out


class SettleStore:
    """Reads, acknowledges and dead-letters journal entries on behalf of one worker."""

    def __init__(self, gate: RedisGate, *, group: str, worker_id: str, settler: str) -> None:
        self._gate = gate
        self._group = group
        self.worker_id = worker_id
        self._settler = settler
        self._read: AsyncScript = gate.redis.register_script(_READ)
        self._settle: AsyncScript = gate.redis.register_script(_SETTLE)
        self._dead: AsyncScript = gate.redis.register_script(_DEAD)

    async def _read_batch(self, partition: int, count: int, which: str) -> list[RawEntry]:
        args: list[str | int] = [self._group, self.worker_id, count, which]

        async def op() -> list[bytes]:
            try:
                reply: list[bytes] = await self._read(keys=[stream_key(partition)], args=args)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._gate.redis.xgroup_create(
                    stream_key(partition), self._group, id="0", mkstream=True
                )
                return []
            return reply

        return _json_entries(await self._gate.call(f"read {which}", op))

    async def claim_pending(self, partition: int, count: int) -> list[RawEntry]:
        """The oldest entries delivered but not acknowledged, claimed for this worker."""
        return await self._read_batch(partition, count, "pending")

    async def read_new(self, partition: int, count: int, block_ms: int) -> list[RawEntry]:
        """Entries never delivered to the group, waiting up to `block_ms` for some when there are none."""
        entries = await self._read_batch(partition, count, "new")
        if entries or block_ms <= 0:
            return entries
        stream = stream_key(partition)

        async def op() -> Any:
            try:
                return await self._gate.redis.xreadgroup(
                    self._group, self.worker_id, {stream: ">"}, count=count, block=block_ms
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._gate.redis.xgroup_create(stream, self._group, id="0", mkstream=True)
                return []

        reply = await self._gate.call("xreadgroup", op)
        if not reply:
            return []
        return _entries(reply[0][1])

    async def settled_ids(self, partition: int, decision_ids: Sequence[str]) -> set[str]:
        """Which of `decision_ids` already have a settled record (e.g. appended again after a crash)."""
        if not decision_ids:
            return set()

        async def op() -> list[bytes | str | None]:
            values: list[bytes | str | None] = await self._gate.redis.hmget(
                settled_key(partition), list(decision_ids)
            )
            return values

        values = await self._gate.call("settled lookup", op)
        return {d for d, v in zip(decision_ids, values, strict=True) if v is not None}

    async def settle(self, partition: int, settled: Sequence[Settled], now_ms: int) -> int:
        """Acknowledge and record `settled`; returns how many records are new. Raises LeaseLostError."""
        if not settled:
            return 0
        rows = [
            [s.stream_id, s.decision_id, "1" if s.approved else "0", str(s.amount_minor), s.currency,
             s.decided_by, s.how]
            for s in settled
        ]  # fmt: skip
        keys = [stream_key(partition), settled_key(partition), counts_key(partition), lease_key(partition)]
        args: list[str | int] = [self._group, self.worker_id, self._settler, now_ms, json.dumps(rows)]

        async def op() -> int:
            reply: int = await self._settle(keys=keys, args=args)
            return reply

        fresh = await self._gate.call("settle", op)
        if fresh < 0:
            raise LeaseLostError(f"partition {partition}: lease taken by another worker, nothing recorded")
        return fresh

    async def dead_letter(self, partition: int, dead: Sequence[DeadLetter], now_ms: int) -> int:
        """Move `dead` to the dead-letter stream; returns how many moved. Raises LeaseLostError."""
        if not dead:
            return 0
        rows = []
        for d in dead:
            fields = {k: v for k, v in d.fields.items() if not k.startswith("dead_")}
            fields |= {
                "dead_error": d.error[:1000],
                "dead_attempts": str(d.attempts),
                "dead_at_ms": str(now_ms),
                "dead_from": d.stream_id,
                "dead_worker": self.worker_id,
            }
            rows.append([d.stream_id, [item for pair in fields.items() for item in pair]])
        keys = [stream_key(partition), dead_key(partition), lease_key(partition)]
        args: list[str | int] = [self._group, self.worker_id, json.dumps(rows, ensure_ascii=False)]

        async def op() -> int:
            reply: int = await self._dead(keys=keys, args=args)
            return reply

        moved = await self._gate.call("dead letter", op)
        if moved < 0:
            raise LeaseLostError(f"partition {partition}: lease taken by another worker, nothing moved")
        return moved

    async def prune_consumers(self, partition: int, min_idle_ms: int) -> int:
        """Delete consumers of dead workers (nothing pending, idle that long); returns how many.

        Every worker joins the group under its own id, so restarts leave consumers behind. One with
        pending entries is never deleted: that would drop its entries from the pending list.
        """
        stream = stream_key(partition)

        async def op() -> int:
            gone = 0
            for c in await self._gate.redis.xinfo_consumers(stream, self._group):
                name = _text(c["name"])
                if name != self.worker_id and int(c["pending"]) == 0 and int(c["idle"]) >= min_idle_ms:
                    await self._gate.redis.xgroup_delconsumer(stream, self._group, name)
                    gone += 1
            return gone

        return await self._gate.call("prune consumers", op)

    async def heartbeat(self, state: Mapping[str, object]) -> None:
        """Publish this worker's state for `authgw standin status`."""
        value = json.dumps({"worker": self.worker_id, "host": socket.gethostname(), **state})

        async def op() -> None:
            await self._gate.redis.hset(WORKERS_KEY, self.worker_id, value)

        await self._gate.call("heartbeat", op)

    async def workers(self) -> dict[str, dict[str, Any]]:
        """Every worker's last heartbeat."""

        async def op() -> dict[bytes | str, bytes | str]:
            values: dict[bytes | str, bytes | str] = await self._gate.redis.hgetall(WORKERS_KEY)
            return values

        raw = await self._gate.call("workers", op)
        out: dict[str, dict[str, Any]] = {}
        for k, v in raw.items():
            try:
                out[_text(k)] = json.loads(v)
            except ValueError:
                continue
        return out

    async def forget_workers(self, worker_ids: Sequence[str]) -> None:
        """Drop heartbeats (our own on close, long-dead workers' when seen)."""
        if not worker_ids:
            return

        async def op() -> None:
            await self._gate.redis.hdel(WORKERS_KEY, *worker_ids)

        await self._gate.call("forget workers", op)

    async def forget_silent_workers(self, now_ms: float, silent_ms: float) -> None:
        """Drop the heartbeats of workers silent for more than `silent_ms` (long dead)."""
        workers = await self.workers()
        dead = [w for w, hb in workers.items() if now_ms - float(hb.get("updated_ms", 0)) > silent_ms]
        await self.forget_workers(dead)
