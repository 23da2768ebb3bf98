"""What `authgw top` reads besides the gateways' endpoints: etcd's membership and the Redis journal.

    EtcdSource    the routing mode set in etcd, each pool's registered members (address) and drain
                  flag, the gateways registered (the fleet), from one read of the key prefix
    RedisSource   the fleet-wide journal (unsettled entries, delivered not acknowledged, dead
                  letters, oldest age) and the stand-in approvals of the last hour: entries are read
                  incrementally from where the previous refresh stopped (at most 5,000 a partition
                  per refresh: a larger backlog is caught up over several), so an approval settled
                  (deleted) before top saw it is missed; top says "as seen since it started"

Each read returns its error as text rather than raising: a view with etcd or Redis down is the
view an operator needs most.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from health.errors import EtcdError
from health.etcd import EtcdClient
from health.keys import KeyLayout
from standin.errors import StandInError
from standin.journal import StreamJournal
from standin.redis_config import RedisRole
from standin.redis_io import RedisGate
from standin.redis_link import RedisLink
from standin.settings import StandInConfig
from standin.settlement.keys import stream_key

__all__ = ["EtcdSource", "EtcdView", "JournalView", "RedisSource"]

_WINDOW_S = 3600.0
_BATCH = 5000  # journal entries read per partition per refresh at most


@dataclass(frozen=True)
class EtcdView:
    mode: str = ""
    # pool -> (drained, member -> address)
    pools: dict[str, tuple[bool, dict[str, str]]] = field(default_factory=dict)
    gateways: list[str] = field(default_factory=list)
    error: str | None = None


class EtcdSource:
    """Reads the membership prefix once per refresh."""

    def __init__(self, client: EtcdClient, layout: KeyLayout) -> None:
        self.client = client
        self._layout = layout

    async def read(self) -> EtcdView:
        try:
            result = await self.client.get_prefix(self._layout.prefix)
        except EtcdError as exc:
            return EtcdView(error=str(exc))
        membership = self._layout.fold(
            {kv.key: kv.value for kv in result.kvs}, revision=result.revision, etcd_connected=True
        )
        pools = {
            name: (view.drained, {m: info.address for m, info in view.members.items()})
            for name, view in membership.pools.items()
        }
        return EtcdView(str(membership.mode), pools, sorted(membership.gateways))


@dataclass(frozen=True)
class JournalView:
    entries: int = 0
    pending: int = 0
    dead_letters: int = 0
    oldest_age_s: float | None = None
    approved_hour: dict[str, int] = field(default_factory=dict)  # currency -> amount (minor units)
    approvals_hour: int = 0
    error: str | None = None


@dataclass
class _Approvals:
    """Stand-in approvals seen in the journal, kept for one hour."""

    seen: deque[tuple[float, str, str, int]] = field(default_factory=deque)  # (at, id, currency, amount)
    ids: set[str] = field(default_factory=set)

    def add(self, fields: Mapping[str, str], now: float) -> None:
        if fields.get("entry", "decision") != "decision" or fields.get("approved") != "1":
            return
        decision_id = fields.get("decision_id", "")
        try:
            at = datetime.fromisoformat(fields["decided_at"]).timestamp()
            amount = int(fields["amount_minor"])
        except (KeyError, ValueError):
            return
        if decision_id in self.ids or at < now - _WINDOW_S:
            return  # an entry moved again (local journal -> Redis) is the same decision
        self.ids.add(decision_id)
        self.seen.append((at, decision_id, fields.get("currency", "?"), amount))

    def hour(self, now: float) -> tuple[int, dict[str, int]]:
        while self.seen and self.seen[0][0] < now - _WINDOW_S:
            self.ids.discard(self.seen.popleft()[1])
        totals: dict[str, int] = {}
        for _, _, currency, amount in self.seen:
            totals[currency] = totals.get(currency, 0) + amount
        return len(self.seen), totals


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisSource:
    """The journal streams, as the operator's Redis user (`[redis.operator]`, else the gateway's)."""

    def __init__(self, config: StandInConfig, *, wall_clock: Callable[[], float] = time.time) -> None:
        settings = config.redis
        self.link = RedisLink(settings, RedisRole.OPERATOR)
        self._gate = RedisGate(self.link.client, settings.command_deadline * 10)
        self._journal = StreamJournal(
            self._gate,
            partitions=config.journal.partitions,
            consumer_group=config.journal.consumer_group,
            dedupe_ttl=config.journal.dedupe_ttl,
        )
        self._partitions = config.journal.partitions
        self._after: dict[int, str] = {}
        self._approvals = _Approvals()
        self._clock = wall_clock

    async def read(self) -> JournalView:
        now = self._clock()
        try:
            backlog = await self._journal.backlog()
            for p in range(self._partitions):
                await self._read_new(p, now)
        except StandInError as exc:
            return JournalView(error=f"Redis: {exc}")
        count, amounts = self._approvals.hour(now)
        oldest = None if backlog.oldest_ms is None else max(0.0, now - backlog.oldest_ms / 1000)
        return JournalView(backlog.entries, backlog.pending, backlog.dead_letters, oldest, amounts, count)

    async def _read_new(self, partition: int, now: float) -> None:
        start = f"({self._after[partition]}" if partition in self._after else "-"

        async def op() -> list[Any]:
            got = await self._gate.redis.xrange(stream_key(partition), min=start, count=_BATCH)
            return list(got or [])

        for entry_id, raw in await self._gate.call("top journal read", op):
            self._after[partition] = _text(entry_id)
            self._approvals.add({_text(k): _text(v) for k, v in raw.items()}, now)

    async def start(self) -> None:
        await self.link.start()

    async def close(self) -> None:
        await self.link.close()
