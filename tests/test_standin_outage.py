"""Redis failures: the local SQLite journal takes over, nothing is lost, all reaches the stream once."""

from __future__ import annotations

import asyncio
import collections
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import PAN_MC, PAN_VISA, assert_eventually
from test_standin_support import (
    IMPATIENT,
    PATIENT,
    TOKEN_KEY,
    client,
    engine,
    luhn_pan,
    policy,
    request,
    sqlite_rows,
    stream_entries,
)

from chaos.processes import ManagedProcess, free_port, start_redis
from standin import JournalKind, LocalSettings, Reason, ResponseCode, StandIn, StandInDecision, WindowLimit
from standin.cardstatus import CardStatusRecord, load_card_statuses
from standin.deciding import REPLY_LOST_RULE
from standin.journal import StreamJournal
from standin.keys import spend_key
from standin.redis_io import RedisGate
from standin.sqlite_journal import SqliteJournal
from standin.tokens import CardTokenizer
from standin.types import CardStatus, LimitKind

PANS = [luhn_pan(f"4970{i:04d}") for i in range(20)]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A private Redis (AOF, fsync always) this test may SIGKILL and restart."""
    proc = start_redis(tmp_path / "redis")
    yield proc
    proc.stop()


async def journal_of(port: int) -> list[dict[str, str]]:
    r = client(port)
    try:
        return await stream_entries(r)
    finally:
        await r.aclose()


async def test_redis_killed_mid_traffic_loses_nothing(own_redis: ManagedProcess, tmp_path: Path) -> None:
    """SIGKILL Redis under load: every decision is in SQLite or the stream, then all in the stream once."""
    db = tmp_path / "local.sqlite3"
    decisions: list[StandInDecision] = []
    stop = asyncio.Event()

    async def worker(e: StandIn, w: int) -> None:
        i = 0
        while not stop.is_set():
            decisions.append(
                await e.decide(request(PANS[(w + i) % len(PANS)], amount_minor=100), Reason.FORCED)
            )
            i += 1
            await asyncio.sleep(0.002)

    async with engine(own_redis.port, db, redis_settings=IMPATIENT) as e:
        async with asyncio.TaskGroup() as tg:
            for w in range(8):
                tg.create_task(worker(e, w))
            await assert_eventually(lambda: _at_least(decisions, 80), timeout_s=10)
            await asyncio.to_thread(own_redis.kill)
            await assert_eventually(lambda: _local_at_least(decisions, 80), timeout_s=10)
            stop.set()
        assert not [d for d in decisions if d.journal is JournalKind.NONE]
        local_ids = {d.decision_id for d in decisions if d.journal is JournalKind.SQLITE}
        assert local_ids <= {row[1] for row in sqlite_rows(db)}
        await asyncio.to_thread(own_redis.start)

        async def all_in_stream_once() -> None:
            counts = collections.Counter(f["decision_id"] for f in await journal_of(own_redis.port))
            assert set(counts) == {d.decision_id for d in decisions}
            assert max(counts.values()) == 1
            assert (await e.status()).local_backlog == 0

        await assert_eventually(all_in_stream_once, timeout_s=20)
    # A DECIDE in flight when Redis died may have run without its reply: that one is answered 91
    # (redis.reply_lost, recorded like any decision); every other decision approves (limits are wide).
    assert {d.rule for d in decisions if not d.approved} <= {REPLY_LOST_RULE}
    assert sum(d.approved for d in decisions) >= len(decisions) - 8  # at most one per worker in flight


def _at_least(decisions: list[StandInDecision], n: int) -> None:
    assert len(decisions) >= n


def _local_at_least(decisions: list[StandInDecision], n: int) -> None:
    assert sum(d.journal is JournalKind.SQLITE for d in decisions) >= n


async def test_local_limits_are_a_fraction_of_the_fleet_limits(tmp_path: Path) -> None:
    """With Redis unreachable a gateway grants a card at most limit_fraction of its window amount."""
    pol = policy(purchase=WindowLimit(10_000, 100))
    async with engine(
        free_port(),
        tmp_path / "l.db",
        pol=pol,
        redis_settings=IMPATIENT,
        local=LocalSettings(limit_fraction=0.25),
    ) as e:
        results = [await e.decide(request(PAN_VISA, amount_minor=1_000), Reason.FORCED) for _ in range(4)]
    assert [d.approved for d in results] == [True, True, False, False]
    assert results[-1].rule == "limit.amount.purchase"
    assert {d.journal for d in results} == {JournalKind.SQLITE}


async def test_local_count_limit_is_a_fraction_too(tmp_path: Path) -> None:
    """The count limit is scaled as well: 8 purchases x 0.25 = 2 locally, the 3rd is declined 65."""
    pol = policy(purchase=WindowLimit(1_000_000, 8))
    async with engine(
        free_port(),
        tmp_path / "l.db",
        pol=pol,
        redis_settings=IMPATIENT,
        local=LocalSettings(limit_fraction=0.25),
    ) as e:
        results = [await e.decide(request(PAN_VISA, amount_minor=100), Reason.FORCED) for _ in range(3)]
    assert [d.response_code for d in results] == [ResponseCode.APPROVED] * 2 + [
        ResponseCode.EXCEEDS_FREQUENCY_LIMIT
    ]


async def test_same_request_is_decided_once_locally(tmp_path: Path) -> None:
    """Without Redis, repeating a request id returns the recorded decision and adds no row."""
    db = tmp_path / "l.db"
    req = request(PAN_VISA)
    async with engine(free_port(), db, redis_settings=IMPATIENT) as e:
        first = await e.decide(req, Reason.FORCED)
        assert await e.decide(req, Reason.FORCED) == first
    assert len(sqlite_rows(db)) == 1


async def test_no_journal_means_decline_91(tmp_path: Path) -> None:
    """When neither Redis nor SQLite can record, the answer is 91 and never an approval."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the journal's directory should be")
    async with engine(free_port(), blocker / "l.db", redis_settings=IMPATIENT) as e:
        d = await e.decide(request(PAN_VISA), Reason.FORCED)
    assert (d.approved, d.response_code, d.approval_code) == (False, ResponseCode.ISSUER_UNAVAILABLE, "")
    assert (d.rule, d.journal) == ("journal.unavailable", JournalKind.NONE)


async def test_dead_redis_costs_one_short_deadline(own_redis: ManagedProcess, tmp_path: Path) -> None:
    """A hung Redis (SIGSTOP) delays one decision by ~the 120 ms deadline; the next ones go local at once."""
    async with engine(own_redis.port, tmp_path / "l.db", redis_settings=IMPATIENT) as e:
        await e.decide(request(PAN_VISA), Reason.FORCED)  # warm the connection pool
        own_redis.signal(signal.SIGSTOP)
        try:
            started = time.perf_counter()
            first = await e.decide(request(PAN_VISA), Reason.FORCED)
            first_s = time.perf_counter() - started
            started = time.perf_counter()
            second = await e.decide(request(PAN_VISA), Reason.FORCED)
            second_s = time.perf_counter() - started
        finally:
            own_redis.signal(signal.SIGCONT)
    assert (first.journal, second.journal) == (JournalKind.SQLITE, JournalKind.SQLITE)
    assert first_s < 0.3, f"first decision took {first_s * 1000:.0f} ms"
    assert second_s < 0.1, f"second decision took {second_s * 1000:.0f} ms"  # < the 120 ms deadline


async def test_backlog_moves_once_after_a_crash_between_append_and_mark(tmp_path: Path) -> None:
    """Entries already appended before a crash (rows not marked moved) are not appended again."""
    port, db = free_port(), tmp_path / "l.db"
    async with engine(port, db, redis_settings=IMPATIENT) as e:
        local = [await e.decide(request(p), Reason.FORCED) for p in PANS[:6]]
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
    try:
        # Replay the first half by hand, as a mover that crashed before marking its rows would have left it.
        sqlite = SqliteJournal(db, window=timedelta(hours=24))
        await sqlite.open()
        r = client(port)
        journal = StreamJournal(
            RedisGate(r, timedelta(seconds=2)),
            partitions=1,
            consumer_group="settlement",
            dedupe_ttl=timedelta(hours=1),
        )
        for row in (await sqlite.pending(100))[:3]:
            await journal.append(row.card_token, row.outcome.decision_id, row.fields)
        await sqlite.close()
        await r.aclose()
        async with engine(port, db, redis_settings=PATIENT) as e:

            async def moved_once() -> None:
                ids = [f["decision_id"] for f in await journal_of(port)]
                assert sorted(ids) == sorted(d.decision_id for d in local)
                assert (await e.status()).local_backlog == 0

            await assert_eventually(moved_once, timeout_s=10)
    finally:
        await asyncio.to_thread(redis.stop)


async def test_local_approvals_join_the_fleet_counters(tmp_path: Path) -> None:
    """After Redis returns, approvals made locally are counted in Redis and their requests answer the same."""
    port, db = free_port(), tmp_path / "l.db"
    req = request(PAN_VISA, amount_minor=700)
    redis: ManagedProcess | None = None
    try:
        async with engine(port, db, redis_settings=IMPATIENT) as e:
            first = await e.decide(req, Reason.FORCED)
            await e.decide(request(PAN_VISA, amount_minor=300), Reason.FORCED)
            assert (await e.status()).redis_up is False
            redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
            await assert_eventually(_backlog_empty(e), timeout_s=10)
            again = await e.decide(req, Reason.FORCED)
            r = client(port)
            members = await r.zrange(
                spend_key(CardTokenizer(TOKEN_KEY).token(PAN_VISA), LimitKind.PURCHASE), 0, -1
            )
            await r.aclose()
    finally:
        if redis is not None:
            await asyncio.to_thread(redis.stop)
    assert (again.decision_id, again.approval_code) == (first.decision_id, first.approval_code)
    assert sorted(int(m.decode().rsplit(":", 1)[1]) for m in members) == [300, 700]


def _backlog_empty(e: object) -> object:
    async def check() -> None:
        status = await e.status()  # type: ignore[attr-defined]
        assert status.redis_up and status.local_backlog == 0

    return check


async def test_card_status_is_enforced_locally_from_the_last_copy(
    own_redis: ManagedProcess, tmp_path: Path
) -> None:
    """A card the issuer listed as lost is still declined 41 while Redis is down (from the local copy)."""
    r = client(own_redis.port)
    await load_card_statuses(
        RedisGate(r, timedelta(seconds=2)),
        CardTokenizer(TOKEN_KEY),
        [CardStatusRecord(PAN_MC, CardStatus.LOST)],
    )
    await r.aclose()
    db = tmp_path / "l.db"
    local = LocalSettings(card_status_sync=timedelta(milliseconds=50))
    async with engine(own_redis.port, db, redis_settings=IMPATIENT, local=local) as e:
        await assert_eventually(lambda: _has_status_copy(db), timeout_s=5)
        await asyncio.to_thread(own_redis.kill)
        lost = await e.decide(request(PAN_MC), Reason.FORCED)
        other = await e.decide(request(PAN_VISA), Reason.FORCED)
    assert (lost.response_code, lost.rule, lost.journal) == (
        ResponseCode.LOST_CARD,
        "card_status.lost",
        JournalKind.SQLITE,
    )
    assert (other.approved, other.journal) == (True, JournalKind.SQLITE)


def _has_status_copy(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT status FROM card_status").fetchall() == [("lost",)]
    finally:
        conn.close()


async def test_append_failure_after_counting_is_journaled_locally_and_counted_once(
    own_redis: ManagedProcess, tmp_path: Path
) -> None:
    """Redis counted it but refused the append: the decision goes to SQLite, then the stream, counted once."""
    db = tmp_path / "l.db"
    async with engine(own_redis.port, db, redis_settings=IMPATIENT) as e:
        r = client(own_redis.port)
        await r.delete("authgw:{journal:0}:decisions")
        await r.set("authgw:{journal:0}:decisions", "not a stream")  # XADD now fails with WRONGTYPE
        d = await e.decide(request(PAN_VISA, amount_minor=500), Reason.FORCED)
        assert (d.approved, d.journal) == (True, JournalKind.SQLITE)
        assert [(row[1], row[8]) for row in sqlite_rows(db)] == [(d.decision_id, 1)]  # counted_in_redis
        await r.delete("authgw:{journal:0}:decisions")  # the probe recreates the stream and its group

        async def moved_and_counted_once() -> None:
            assert [f["decision_id"] for f in await journal_of(own_redis.port)] == [d.decision_id]
            spend = await r.zrange(
                spend_key(CardTokenizer(TOKEN_KEY).token(PAN_VISA), LimitKind.PURCHASE), 0, -1
            )
            assert spend == [f"{d.decision_id}:500".encode()]

        await assert_eventually(moved_and_counted_once, timeout_s=10)
        await r.aclose()
