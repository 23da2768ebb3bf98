"""Settlement's Redis side: read a partition through the consumer group, record what the issuer has.

Reading, per partition, oldest first:
  1. `XAUTOCLAIM 0-0 min-idle 0`: every entry delivered to some worker of the group and never
     acknowledged (a dead worker's, or our own that failed). Only the lease holder reads, so
     claiming at idle 0 is safe: the idle time a dead holder's entries wait is the lease TTL.
  2. only when nothing is pending, `XREADGROUP >`: new entries.
Pending entries are older than any new one, so reading them first keeps each card's order.
Both run in a script that returns each entry as one JSON array: redis-py's pure-Python
parser costs ~50 µs per entry of ~30 fields read natively, more than sending the advice.
Only when the stream is drained does a plain blocking XREADGROUP wait (up to `block`, sent to
the node owning the stream: no COMMAND GETKEYS on a Cluster, redis_durable.py) for
the next decisions, which arrive a few at a time.

Recording is one script per batch in the partition's slot (keys.py), so it happens
whole or not at all:
  SETTLE  XACK + XDEL each entry the issuer acknowledged, record it in today's settled bucket
          unless a kept bucket has it and, only when that record is new, add it to the
          per-gateway counters: running it twice (a crash before the reply) changes nothing.
          The settled records live in one hash per day, each expiring after the retention
          (SettlementSettings.settled_retention, 8 days): Redis 7.0 has no per-field expiry,
          and a record must outlive any local journal that could still be moved to the stream
          (else a late move of a decision settled long ago would be advised again; the
          issuer dedupes by decision id even then).
  DEAD    move entries to the dead-letter stream with their last error (XACK + XDEL + XADD),
          only those still pending, so no entry is dead-lettered twice.
Both refuse (return -1) when another worker holds the partition's lease: a worker that lost
its lease leaves the entries to the new holder, which sends them again (the issuer dedupes).
Settled entries are deleted from the stream, which therefore holds exactly the unsettled
backlog; the settled records keep what reconcile needs.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from standin.errors import StoreUnavailableError
from standin.redis_durable import execute_on_key_node
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
-- KEYS[1] stream  KEYS[2] counts  KEYS[3] lease  KEYS[4] today's settled bucket
-- KEYS[5..] the earlier buckets still kept (a record in any of them is not new)
-- ARGV[1] group  ARGV[2] worker id  ARGV[3] settler  ARGV[4] now_ms  ARGV[5] bucket ttl ms
-- ARGV[6] JSON [[stream_id, decision_id, outcome, amount, currency, decider, how, request key], ...]
--   outcome: approved | declined | reversed
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[2] then return -1 end
local fresh = 0
for _, e in ipairs(cjson.decode(ARGV[6])) do
  redis.call('XACK', KEYS[1], ARGV[1], e[1])
  redis.call('XDEL', KEYS[1], e[1])
  local known = false
  for i = 5, #KEYS do
    if redis.call('HEXISTS', KEYS[i], e[2]) == 1 then known = true end
  end
  local record = table.concat({e[3], e[4], e[5], e[6], ARGV[3], ARGV[4], e[7], e[8]}, '|')
  if not known and redis.call('HSETNX', KEYS[4], e[2], record) == 1 then
    fresh = fresh + 1
    for _, who in ipairs({'decider:' .. e[6], 'settler:' .. ARGV[3]}) do
      redis.call('HINCRBY', KEYS[2], who .. '|' .. e[3] .. '|count', 1)
      redis.call('HINCRBY', KEYS[2], who .. '|' .. e[3] .. '|' .. e[5], e[4])
    end
  end
end
if redis.call('PTTL', KEYS[4]) < 0 then redis.call('PEXPIRE', KEYS[4], ARGV[5]) end
return fresh
"""

_SETTLED_LOOKUP = """
-- KEYS: the settled buckets kept  ARGV: decision ids
local out = {}
for j = 1, #ARGV do
  local found = 0
  for i = 1, #KEYS do
    if redis.call('HEXISTS', KEYS[i], ARGV[j]) == 1 then found = 1 end
  end
  out[j] = found
end
return out
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


_DAY_MS = 86_400_000


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
    outcome: str  # approved | declined | reversed
    amount_minor: int
    currency: str
    decided_by: str
    how: str
    card_token: str = ""
    request_key: str = ""  # "<acquirer>:<request id>" (a reversal's: of its original), for reconcile


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

    def __init__(
        self,
        gate: RedisGate,
        *,
        group: str,
        worker_id: str,
        settler: str,
        retention: timedelta = timedelta(days=8),
    ) -> None:
        self._gate = gate
        self._group = group
        self.worker_id = worker_id
        self._settler = settler
        self._retention_days = max(1, math.ceil(retention / timedelta(days=1)))
        self._read: AsyncScript = gate.redis.register_script(_READ)
        self._settle: AsyncScript = gate.redis.register_script(_SETTLE)
        self._lookup: AsyncScript = gate.redis.register_script(_SETTLED_LOOKUP)
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
                return await execute_on_key_node(
                    self._gate.redis, stream, "XREADGROUP", "GROUP", self._group, self.worker_id,
                    "COUNT", count, "BLOCK", block_ms, "STREAMS", stream, ">",
                )  # fmt: skip
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._gate.redis.xgroup_create(stream, self._group, id="0", mkstream=True)
                return []

        reply = await self._gate.call("xreadgroup", op)
        if not reply:
            return []
        return _entries(reply[0][1])

    def _buckets(self, partition: int, now_ms: int) -> list[str]:
        """Today's settled bucket, then the earlier ones still kept."""
        today = now_ms // _DAY_MS
        return [settled_key(partition, today - i) for i in range(self._retention_days + 1)]

    async def settled_ids(self, partition: int, decision_ids: Sequence[str], now_ms: int) -> set[str]:
        """Which of `decision_ids` already have a settled record (e.g. appended again after a crash)."""
        if not decision_ids:
            return set()
        buckets = self._buckets(partition, now_ms)

        async def op() -> list[int]:
            found: list[int] = await self._lookup(keys=buckets, args=list(decision_ids))
            return found

        found = await self._gate.call("settled lookup", op)
        return {d for d, hit in zip(decision_ids, found, strict=True) if hit}

    async def settle(self, partition: int, settled: Sequence[Settled], now_ms: int) -> int:
        """Acknowledge and record `settled`; returns how many records are new. Raises LeaseLostError."""
        if not settled:
            return 0
        rows = [
            [
                s.stream_id,
                s.decision_id,
                s.outcome,
                str(s.amount_minor),
                s.currency,
                s.decided_by,
                s.how,
                s.request_key,
            ]
            for s in settled
        ]
        keys = [
            stream_key(partition),
            counts_key(partition),
            lease_key(partition),
            *self._buckets(partition, now_ms),
        ]
        ttl_ms = (self._retention_days + 1) * _DAY_MS
        args: list[str | int] = [self._group, self.worker_id, self._settler, now_ms, ttl_ms, json.dumps(rows)]

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
