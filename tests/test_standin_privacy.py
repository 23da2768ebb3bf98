"""No PAN anywhere stand-in writes: Redis keys and values, streams, SQLite, AOF, logs.

"No PAN" as tests/pan_scan.py means it: not in full, nor its BIN with its last four, nor
its middle digits, nor any 6 of its digits as a number or 8 in a row, nor as an integer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import assert_eventually
from test_standin_support import IMPATIENT, TOKEN_KEY, client, dump_redis, engine, request, sqlite_rows

from chaos.processes import start_redis
from standin import Channel, Reason, StandIn
from standin.cardstatus import CardStatusRecord, load_card_statuses
from standin.redis_io import RedisGate
from standin.tokens import CardTokenizer
from standin.types import CardStatus
from tests.pan_scan import DISTINCT_PANS, PanScanner

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
PAN_A, PAN_B, PAN_C = DISTINCT_PANS[:3]
PANS = [PAN_A, PAN_B, PAN_C, PAN_A[:-1] + str((int(PAN_A[-1]) + 1) % 10)]  # the last one fails Luhn: 14
SCANNER = PanScanner(PANS)


def leaks(blob: bytes) -> list[str]:
    """What `blob` shows of the PANs (pan_scan.py: findings, each by its rule and card's last four)."""
    return [str(f) for f in SCANNER.scan("blob", blob, binary=True)]


def files_on_disk(root: Path) -> dict[str, bytes]:
    """Every file under `root` (AOF, SQLite with its WAL, logs) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def traffic(e: StandIn) -> None:
    for pan in PANS:
        await e.decide(
            request(pan), Reason.ALL_POOLS_FAILED, trace_context="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        )
        await e.decide(request(pan, mcc="7995"), Reason.DECLINE_STORM)
        await e.decide(request(pan, channel=Channel.ATM, mcc="6011"), Reason.NO_LIVE_MEMBERS)


async def test_no_clear_pan_is_stored_or_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """After Redis and local decisions, a card-status load and a migration, no PAN is found anywhere."""
    caplog.set_level(logging.DEBUG)
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis")
    db = tmp_path / "local.sqlite3"
    r = client(redis.port)
    try:
        statuses = [CardStatusRecord(PAN_B, CardStatus.LOST), CardStatusRecord(PAN_C, CardStatus.BLOCKED)]
        await load_card_statuses(RedisGate(r, timedelta(seconds=2)), CardTokenizer(TOKEN_KEY), statuses)
        async with engine(redis.port, db, redis_settings=IMPATIENT) as e:
            await traffic(e)
            await asyncio.to_thread(redis.kill)
            await traffic(e)
            # every decision made while Redis was dead is local; so may be a few of the first
            # round, when a slow first AOF fsync outlasts the impatient deadline
            assert len(sqlite_rows(db)) >= 3 * len(PANS)
            await asyncio.to_thread(redis.start)

            async def moved() -> None:
                assert (await e.status()).local_backlog == 0

            await assert_eventually(moved, timeout_s=10)
        redis_blob = b"\n".join(await dump_redis(r))
    finally:
        await r.aclose()
        await asyncio.to_thread(redis.stop)
    assert b"authgw:{journal:0}:decisions" in redis_blob  # the scan did see the journal
    assert leaks(redis_blob) == []
    assert leaks(repr(sqlite_rows(db)).encode()) == []
    on_disk = await asyncio.to_thread(files_on_disk, tmp_path)
    assert any("appendonly" in name for name in on_disk)
    assert [name for name, blob in on_disk.items() if leaks(blob)] == []
    assert leaks("\n".join(rec.getMessage() for rec in caplog.records).encode()) == []
