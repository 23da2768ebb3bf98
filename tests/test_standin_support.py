"""Shared builders for the stand-in tests (no tests here): keys, requests, engines, Redis scans."""

from __future__ import annotations

import base64
import itertools
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from standin import (
    Channel,
    JournalSettings,
    LocalSettings,
    RedisSettings,
    StandIn,
    StandInPolicy,
    StandInRequest,
    WindowLimit,
    make_redis_client,
)
from standin.balances import BalanceSettings
from standin.crypto import PanKeyring
from standin.tokens import CardTokenizer

TOKEN_KEY = bytes(range(32))
PAN_KEY = bytes(range(100, 132))
ENV = {
    "AUTHGW_TOKEN_KEY": base64.b64encode(TOKEN_KEY).decode(),
    "AUTHGW_PAN_KEY": base64.b64encode(PAN_KEY).decode(),
}
# Generous deadlines for tests that are not about Redis failing: a slow CI box must not flip to local mode.
PATIENT = RedisSettings(
    command_deadline=timedelta(seconds=2),
    socket_timeout=timedelta(seconds=2),
    connect_timeout=timedelta(seconds=1),
    probe_interval=timedelta(milliseconds=50),
)
# Fail-fast deadlines (the production defaults, with a quicker probe) for tests that kill Redis.
IMPATIENT = RedisSettings(probe_interval=timedelta(milliseconds=50))

_ids = itertools.count()


def luhn_pan(prefix: str, length: int = 16) -> str:
    """A Luhn-valid PAN starting with `prefix`."""
    body = prefix.ljust(length - 1, "0")
    for check in "0123456789":
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch)
            if i % 2 == 1:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def request(pan: str, **overrides: Any) -> StandInRequest:
    """A chip-and-PIN grocery purchase at home (the low-risk case), with `overrides`."""
    fields: dict[str, Any] = {
        "request_id": f"req-{next(_ids)}",
        "acquirer_id": "1001",
        "pan": pan,
        "amount_minor": 1_000,
        "currency": "EUR",
        "mcc": "5411",
        "channel": Channel.POS_CHIP,
        "merchant_id": "M-1",
        "terminal_id": "T-1",
        "merchant_country": "FR",
        "pin_verified": True,
        "cardholder_authenticated": False,
        "transmitted_at": datetime(2025, 8, 30, 17, 25, tzinfo=UTC),
    }
    fields.update(overrides)
    return StandInRequest(**fields)


def policy(**overrides: Any) -> StandInPolicy:
    """The default policy, with windows large enough not to get in the way unless overridden."""
    base: dict[str, Any] = {
        "purchase": WindowLimit(max_amount_minor=1_000_000, max_count=1_000),
        "cash": WindowLimit(max_amount_minor=100_000, max_count=100),
    }
    base.update(overrides)
    return StandInPolicy(**base)


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: float = 1_756_574_700.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta.total_seconds()


def at_port(port: int, settings: RedisSettings) -> RedisSettings:
    """`settings` aimed at 127.0.0.1:`port` (rediss:// when its login is TLS)."""
    scheme = "rediss" if settings.login.tls else "redis"
    return RedisSettings(**{**settings.__dict__, "url": f"{scheme}://127.0.0.1:{port}/0"})


def client(port: int, settings: RedisSettings = PATIENT) -> Redis:
    return make_redis_client(at_port(port, settings))


async def flush_standin_keys(redis: Redis) -> None:
    """Delete every stand-in key (authgw:*), leaving other tests' keys alone."""
    batch = [key async for key in redis.scan_iter(match="authgw:*", count=1000)]
    for i in range(0, len(batch), 500):
        await redis.delete(*batch[i : i + 500])


@asynccontextmanager
async def engine(
    port: int,
    sqlite_path: Path,
    *,
    pol: StandInPolicy | None = None,
    clock: Callable[[], float] | None = None,
    instance: str = "gw-test",
    redis_settings: RedisSettings = PATIENT,
    journal: JournalSettings | None = None,
    local: LocalSettings | None = None,
    keyring: PanKeyring | None = None,
    balance: BalanceSettings | None = None,
) -> AsyncIterator[StandIn]:
    """A started engine on its own Redis client (closed on exit); PAN_KEY unless `keyring` is given."""
    settings = at_port(port, redis_settings)
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    async with StandIn(
        redis=make_redis_client(settings),
        policy=pol or policy(),
        tokenizer=CardTokenizer(TOKEN_KEY),
        keyring=keyring or PanKeyring.of(PAN_KEY),
        sqlite_path=sqlite_path,
        instance=instance,
        redis_settings=settings,
        journal_settings=journal,
        local_settings=local,
        owns_redis=True,
        balance_settings=balance,
        **extra,
    ) as e:
        yield e


async def stream_entries(redis: Redis, partitions: int = 1) -> list[dict[str, str]]:
    """Every journal entry in every partition stream, as text fields."""
    out: list[dict[str, str]] = []
    for p in range(partitions):
        for _, fields in await redis.xrange(f"authgw:{{journal:{p}}}:decisions"):
            out.append({k.decode(): v.decode() for k, v in fields.items()})
    return out


def sqlite_rows(path: Path) -> list[tuple[Any, ...]]:
    """Every row of the local journal (read with a separate connection)."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT * FROM decisions ORDER BY seq").fetchall()
    finally:
        db.close()


async def dump_redis(redis: Redis) -> list[bytes]:
    """Every key and every value (strings, hashes, sorted sets, streams) of stand-in, as bytes."""
    out: list[bytes] = []
    async for key in redis.scan_iter(match="*", count=1000):
        out.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            out.append(await redis.get(key) or b"")
        elif kind == "hash":
            for k, v in (await redis.hgetall(key)).items():
                out += [k, v]
        elif kind == "zset":
            out += await redis.zrange(key, 0, -1)
        elif kind == "stream":
            for entry_id, fields in await redis.xrange(key):
                out.append(entry_id)
                for k, v in fields.items():
                    out += [k, v]
    return out


async def journal_of(port: int, pan: str) -> list[dict[str, str]]:
    """The journal entries (one partition) of the card `pan`, in order."""
    r = client(port)
    try:
        return [f for f in await stream_entries(r) if f["pan_last4"] == pan[-4:]]
    finally:
        await r.aclose()
