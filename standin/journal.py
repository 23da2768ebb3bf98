"""The durable journal in Redis: N partition streams, appends idempotent by decision id.

Redis persistence the operator MUST configure (stand-in approves only once the
entry is in the journal, so the journal is only as durable as Redis' AOF):

    appendonly yes
    appendfsync always      every write is fsynced before Redis replies: an acknowledged
                            decision survives a crash of Redis or of its host. Costs one
                            fsync per write (grouped by Redis across clients); on SSDs
                            this stays well within stand-in's latency budget.
    appendfsync everysec    fsync once per second: up to ~1 s of acknowledged decisions
                            (approvals included) is lost if the Redis host crashes or
                            loses power (a Redis process crash alone loses nothing, the
                            OS still holds the writes). Acceptable only with a replica
                            and `WAIT`-style guarantees the bank has signed off.
    appendfsync no          never acceptable for the journal.

Also: no `maxmemory-policy` that evicts (use noeviction: a full Redis must refuse
writes, which sends stand-in to its local journal, rather than silently drop
counters or entries); RDB snapshots alone are not enough. With Sentinel or
Cluster, a failover may lose the writes not yet replicated; run
`min-replicas-to-write 1` to bound that.

Stream entries are never trimmed here: settlement acknowledges and trims them
once the issuer has the advice.

Memory to plan for (maxmemory, with noeviction), per stand-in decision, as
measured on Redis 7: the stream entry (~0.5 KB) until settlement trims it, the
dedupe marker (~0.14 KB) for JournalSettings.dedupe_ttl, the idempotency record
(~0.33 KB) for idempotency_ttl, and for approvals a counter member (<0.17 KB)
for the window: ~1.3 KB in all. A two-hour outage at 1,000 decisions/s is ~7 M
decisions, ~9 GB at the peak.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from redis.exceptions import ResponseError

from standin import keys, lua
from standin.errors import StoreUnavailableError
from standin.redis_durable import DurableScript
from standin.redis_io import RedisGate

__all__ = ["StreamBacklog", "StreamJournal"]


@dataclass(frozen=True, slots=True)
class StreamBacklog:
    """What the journal streams hold, for metrics."""

    entries: int
    """Entries not yet settled, over every partition."""
    pending: int
    """Of those, entries delivered to a settlement worker and not yet acknowledged."""
    oldest_ms: int | None
    """Append time (ms since epoch) of the oldest unsettled entry; None when there is none."""
    dead_letters: int = 0
    """Entries settlement gave up on for now (they wait for `authgw standin replay --dead-letters`)."""


class StreamJournal:
    """Appends decisions to the partition stream of their card, each decision at most once."""

    def __init__(
        self, gate: RedisGate, *, partitions: int, consumer_group: str, dedupe_ttl: timedelta
    ) -> None:
        self._gate = gate
        self.partitions = partitions
        self.consumer_group = consumer_group
        self._dedupe_ttl_ms = int(dedupe_ttl / timedelta(milliseconds=1))
        self._append: DurableScript = gate.script(lua.APPEND)

    def stream_of(self, card_token: str) -> str:
        return keys.stream_key(keys.partition_of(card_token, self.partitions))

    async def ensure_groups(self) -> None:
        """Create every partition stream and its settlement consumer group (idempotent)."""
        for p in range(self.partitions):
            stream = keys.stream_key(p)

            async def op(stream: str = stream) -> None:
                try:
                    await self._gate.redis.xgroup_create(stream, self.consumer_group, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

            await self._gate.call("xgroup create", op)

    async def depth(self) -> list[tuple[int, int, int]]:
        """Per partition: (partition, entries in the stream, entries delivered but not acknowledged)."""
        out: list[tuple[int, int, int]] = []
        for p in range(self.partitions):
            stream = keys.stream_key(p)

            async def op(stream: str = stream) -> tuple[int, int]:
                length = await self._gate.redis.xlen(stream)
                try:
                    pending = await self._gate.redis.xpending(stream, self.consumer_group)
                except ResponseError:  # no such group yet
                    return length, 0
                return length, int(pending["pending"])

            length, pending = await self._gate.call("xlen", op)
            out.append((p, length, pending))
        return out

    async def entries(self) -> int:
        """Entries in every partition's stream: unsettled, delivered or not (one XLEN each)."""
        total = 0
        for p in range(self.partitions):
            stream = keys.stream_key(p)

            async def op(stream: str = stream) -> int:
                length: int = await self._gate.redis.xlen(stream)
                return length

            total += await self._gate.call("xlen", op)
        return total

    async def backlog(self) -> StreamBacklog:
        """Unsettled entries of every partition and the time of the oldest (settlement deletes what it
        settled, so what a stream holds is unsettled; an entry id starts with its append time in ms)."""
        entries = pending = dead = 0
        oldest: int | None = None
        for p in range(self.partitions):
            stream = keys.stream_key(p)

            async def op(stream: str = stream, p: int = p) -> tuple[int, int, int | None, int]:
                length = await self._gate.redis.xlen(stream)
                letters = await self._gate.redis.xlen(keys.dead_key(p))
                first = await self._gate.redis.xrange(stream, count=1) if length else []
                try:
                    summary = await self._gate.redis.xpending(stream, self.consumer_group)
                except ResponseError:  # no such group yet
                    summary = {"pending": 0}
                first_id = first[0][0] if first else None
                if isinstance(first_id, bytes):
                    first_id = first_id.decode()
                first_ms = int(first_id.split("-", 1)[0]) if first_id else None
                return length, int(summary["pending"]), first_ms, letters

            length, delivered, first_ms, letters = await self._gate.call("xlen", op)
            entries += length
            pending += delivered
            dead += letters
            if first_ms is not None and (oldest is None or first_ms < oldest):
                oldest = first_ms
        return StreamBacklog(entries, pending, oldest, dead)

    async def append(
        self, card_token: str, decision_id: str, fields: Mapping[str, str], *, once_per: str = ""
    ) -> tuple[str, bool]:
        """Append `fields` once per decision id (or once per `once_per`, when given: a decision
        journaled again); returns (stream id, whether this call appended it)."""
        partition = keys.partition_of(card_token, self.partitions)
        script_keys = [keys.stream_key(partition), keys.dedupe_key(partition, once_per or decision_id)]
        flat = [item for pair in fields.items() for item in pair]
        args: list[str | int] = [
            self._dedupe_ttl_ms,
            json.dumps(flat, ensure_ascii=False, separators=(",", ":")),
        ]

        async def op() -> list[int | bytes]:
            reply: list[int | bytes] = await self._append(keys=script_keys, args=args)
            return reply

        appended, stream_id = await self._gate.call("append", op)
        if not isinstance(stream_id, bytes):
            raise StoreUnavailableError(f"redis append: unexpected reply {stream_id!r}")
        return stream_id.decode(), appended == 1
