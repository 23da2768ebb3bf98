"""Stand-in's money rules against real Redis: lost replies, reused ids, two decisions for one request.

Each test reproduces a defect found when the gateway was tried from outside; it failed on the
code before the fix (see the closing note of the money-safety issue).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import PAN_MC, PAN_VISA, assert_eventually
from test_standin_support import (
    IMPATIENT,
    TOKEN_KEY,
    client,
    engine,
    luhn_pan,
    policy,
    request,
    stream_entries,
)

from chaos.processes import ManagedProcess, free_port, start_redis
from standin import JournalKind, Reason, RedisSettings, ResponseCode, StandIn, WindowLimit
from standin.counters import RedisCounters
from standin.deciding import REPLY_LOST_RULE
from standin.errors import ReusedRequestIdError
from standin.keys import idempotency_key, unadvised_key
from standin.outcome import Outcome, Proposal
from standin.redis_io import RedisGate
from standin.rules import assess
from standin.tokens import CardTokenizer
from standin.types import StandInRequest

T = TypeVar("T")

# Decisions give up on Redis after 100 ms; the local journal answers then.
QUICK = RedisSettings(
    socket_timeout=timedelta(milliseconds=100),
    command_deadline=timedelta(milliseconds=120),
    probe_interval=timedelta(milliseconds=50),
)


@pytest.fixture(scope="module")
def debug_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """A Redis that accepts DEBUG SLEEP (Redis 7 refuses it unless started so)."""
    proc = start_redis(tmp_path_factory.mktemp("debug-redis"), extra_args=("--enable-debug-command", "local"))
    yield proc
    proc.stop()


async def _stall(port: int, seconds: float) -> None:
    """Redis runs nothing else for `seconds` (a lost reply for whoever waits less)."""
    r = client(port)
    try:
        await r.execute_command("DEBUG", "SLEEP", str(seconds))
    finally:
        await r.aclose()


async def _journaled(port: int, req: StandInRequest) -> tuple[list[dict[str, str]], bytes | None]:
    """The stream entries of `req`'s request id, in order, and its card's unadvised count."""
    r = client(port)
    try:
        entries = [f for f in await stream_entries(r) if f["request_id"] == req.request_id]
        return entries, await r.get(unadvised_key(CardTokenizer(TOKEN_KEY).token(req.pan)))
    finally:
        await r.aclose()


async def test_a_lost_decide_reply_never_leaves_a_decision_nobody_was_told(
    debug_redis: ManagedProcess, tmp_path: Path
) -> None:
    """DECIDE runs after its caller gave up: the answer is 91, journaled, and a repeat gets that 91 too."""
    port = debug_redis.port
    req = request(luhn_pan("4970"), amount_minor=1_000)
    async with engine(port, tmp_path / "l.db", redis_settings=QUICK) as e:
        await e.decide(request(PAN_MC), Reason.ALL_POOLS_FAILED)  # a warm connection: DECIDE will be sent
        stall = asyncio.create_task(_stall(port, 0.5))
        await asyncio.sleep(0.05)  # the server is asleep: DECIDE waits behind DEBUG SLEEP
        first = await e.decide(req, Reason.ALL_POOLS_FAILED)
        await stall  # ... then runs: Redis now holds a decision nobody was told
        r = client(port)
        lost = await r.hgetall(
            idempotency_key(CardTokenizer(TOKEN_KEY).token(req.pan), "1001", req.request_id)
        )
        await r.aclose()
        assert lost[b"response_code"] == b"00"  # the lost call did run: the case the fix is about
        assert (first.response_code, first.rule, first.journal) == (
            ResponseCode.ISSUER_UNAVAILABLE, REPLY_LOST_RULE, JournalKind.SQLITE,
        )  # fmt: skip

        async def moved() -> None:
            assert (await e.status()).local_backlog == 0

        await assert_eventually(moved, timeout_s=10)
        again = await e.decide(req, Reason.ALL_POOLS_FAILED)
    assert (again.decision_id, again.response_code) == (first.decision_id, first.response_code)
    r = client(port)
    mine = [f for f in await stream_entries(r) if f["request_id"] == req.request_id]
    await r.aclose()
    assert [(f["decision_id"], f["response_code"]) for f in mine] == [(first.decision_id, "91")]


async def test_the_last_lost_reply_decision_is_advised_last_though_its_script_ran_later(
    debug_redis: ManagedProcess, tmp_path: Path
) -> None:
    """Two gateways lose a DECIDE reply for one request and each answers 91 on its local journal; the
    first lost script approved, the second replayed that approval (answered_by moves to it) after
    its gateway's 91 was told. Moved in that order, the first 91 is superseded by the untold approval
    (advised with the replay's Redis time), the second replaces it: its advice must come later than
    that approval's, or the issuer posts an approval the acquirer heard as 91 (chaos-money)."""
    port = debug_redis.port
    req = request(luhn_pan("4974"), amount_minor=1_000)
    stays_local = RedisSettings(
        socket_timeout=timedelta(milliseconds=100),
        command_deadline=timedelta(milliseconds=120),
        probe_interval=timedelta(hours=1),
    )
    answers = []
    async with (
        engine(port, tmp_path / "a.db", redis_settings=stays_local, instance="gw-a") as a,
        engine(port, tmp_path / "b.db", redis_settings=stays_local, instance="gw-b") as b,
    ):
        for e in (a, b):
            await e.decide(request(PAN_MC), Reason.ALL_POOLS_FAILED)  # a warm connection
        for e in (a, b):
            stall = asyncio.create_task(_stall(port, 0.4))
            await asyncio.sleep(0.05)
            answers.append(await e.decide(req, Reason.ALL_POOLS_FAILED))  # DECIDE waits, reply lost
            await stall
        await a.move_backlog()
        await b.move_backlog()
    said_91 = (ResponseCode.ISSUER_UNAVAILABLE, REPLY_LOST_RULE)
    assert [(x.response_code, x.rule) for x in answers] == [said_91, said_91]
    r = client(port)
    mine = [f for f in await stream_entries(r) if f["request_id"] == req.request_id]
    await r.aclose()
    assert "00" in [f["response_code"] for f in mine]  # the untold approval was advised: the case
    last = max(mine, key=lambda f: datetime.fromisoformat(f["answered_at"]))
    assert (last["decision_id"], last["response_code"]) == (answers[1].decision_id, "91")
    assert [f["answered_at"] for f in mine].count(last["answered_at"]) == 1  # no tie for the issuer


async def test_a_repeat_declined_after_a_lost_replay_is_journaled_again_at_its_answer(
    debug_redis: ManagedProcess, tmp_path: Path
) -> None:
    """Declined in Redis (advised); the repeat, after an attempt that may have reached an issuer,
    loses its DECIDE reply (the replay's script runs after the gateway answered 91 locally). Moved,
    the 91 is the same outcome as the record: the record's decision is journaled again (again = 1)
    later than its first entry, so the issuer drops its own late approval (chaos-money)."""
    port = debug_redis.port
    over = request(luhn_pan("4975"), amount_minor=60_000)  # above the window: 61 wherever decided
    pol = policy(purchase=WindowLimit(5_000, 5))
    async with engine(port, tmp_path / "l.db", pol=pol, redis_settings=QUICK) as e:
        declined = await e.decide(over, Reason.ALL_POOLS_FAILED)
        stall = asyncio.create_task(_stall(port, 0.4))
        await asyncio.sleep(0.05)
        said_91 = await e.decide(over, Reason.ALL_POOLS_FAILED, maybe_reached_issuer=True)
        await stall

        async def moved() -> None:
            assert (await e.status()).local_backlog == 0

        await assert_eventually(moved, timeout_s=10)
    entries, _ = await _journaled(port, over)
    assert (said_91.response_code, said_91.rule) == (ResponseCode.ISSUER_UNAVAILABLE, REPLY_LOST_RULE)
    assert [(f["decision_id"], f.get("again", "")) for f in entries] == [
        (declined.decision_id, ""),
        (declined.decision_id, "1"),
    ]
    assert entries[1]["answered_at"] > entries[0]["answered_at"]


async def test_two_decisions_of_one_request_advise_one_approval(tmp_path: Path) -> None:
    """Decided locally while Redis was away and again through Redis elsewhere: one approval in the journal."""
    port = free_port()
    req = request(luhn_pan("4971"), amount_minor=1_500)
    slow_probe = RedisSettings(probe_interval=timedelta(hours=1))  # A stays local until told to move
    async with engine(port, tmp_path / "a.db", redis_settings=slow_probe, instance="gw-a") as a:
        local = await a.decide(req, Reason.ALL_POOLS_FAILED)
        redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
        try:
            async with engine(port, tmp_path / "b.db", instance="gw-b") as b:
                remote = await b.decide(req, Reason.ALL_POOLS_FAILED)
            assert local.approved and remote.approved and local.decision_id != remote.decision_id
            assert await a.move_backlog() == 1
            r = client(port)
            mine = [f for f in await stream_entries(r) if f["request_id"] == req.request_id]
            await r.aclose()
        finally:
            await asyncio.to_thread(redis.stop)
    assert [f["decision_id"] for f in mine if f["approved"] == "1"] == [remote.decision_id]


async def test_a_reused_request_id_with_other_content_is_refused(redis_port: int, tmp_path: Path) -> None:
    """Same acquirer and request id, another amount and MCC: refused, nothing journaled or counted."""
    first = request(PAN_VISA, amount_minor=100)
    reused = request(PAN_VISA, request_id=first.request_id, amount_minor=90_000_000, mcc="7995")
    async with engine(redis_port, tmp_path / "l.db") as e:
        approved = await e.decide(first, Reason.ALL_POOLS_FAILED)
        with pytest.raises(ReusedRequestIdError):
            await e.decide(reused, Reason.ALL_POOLS_FAILED)
        repeat = await e.decide(first, Reason.ALL_POOLS_FAILED)
    assert approved.approved and repeat.decision_id == approved.decision_id
    r = client(redis_port)
    entries = [f for f in await stream_entries(r) if f["request_id"] == first.request_id]
    await r.aclose()
    assert [f["amount_minor"] for f in entries] == ["100"]


async def test_a_decision_given_again_after_an_issuer_attempt_is_journaled_again(
    redis_port: int, tmp_path: Path
) -> None:
    """A plain repeat is answered from the record, journaled once; a repeat after an attempt that may
    have reached an issuer is journaled again (again = 1, its later answered_at) and counted once more
    as unadvised, since settlement decrements that count for every entry the issuer acknowledges."""
    first = request(luhn_pan("4991"), amount_minor=100)
    async with engine(redis_port, tmp_path / "l.db") as e:
        decided = await e.decide(first, Reason.ALL_POOLS_FAILED)
        plain = await e.decide(first, Reason.ALL_POOLS_FAILED)
        await asyncio.sleep(0.01)  # answered_at has millisecond resolution
        again = await e.decide(first, Reason.ALL_POOLS_FAILED, maybe_reached_issuer=True)
    assert decided.decision_id == plain.decision_id == again.decision_id
    entries, unadvised = await _journaled(redis_port, first)
    assert [(f["decision_id"], f.get("again", "")) for f in entries] == [
        (decided.decision_id, ""),
        (decided.decision_id, "1"),
    ]
    assert entries[1]["answered_at"] > entries[0]["answered_at"]
    assert unadvised in ("2", b"2")


class _Restartable:
    """A private Redis (AOF) that a test may stop and start again on the same port and data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.process = start_redis(workdir, self.port)

    async def restart_around(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call` while this Redis is stopped; started again after it."""
        await asyncio.to_thread(self.process.stop)
        try:
            return await call()
        finally:
            self.process = await asyncio.to_thread(start_redis, self.workdir, self.port)


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[_Restartable]:
    redis = await asyncio.to_thread(_Restartable, tmp_path / "redis")
    yield redis
    await asyncio.to_thread(redis.process.stop)


@contextlib.contextmanager
def _again_appends_while_down(e: StandIn, redis: _Restartable) -> Iterator[None]:
    """The engine's entries given again (appends with once_per) run against `redis` stopped: the real
    append fails, nothing else does."""
    stream = e._decider.stream
    append = stream.append

    async def down_for_again(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("once_per"):
            return await append(*args, **kwargs)
        return await redis.restart_around(lambda: append(*args, **kwargs))

    stream.append = down_for_again  # type: ignore[method-assign]
    try:
        yield
    finally:
        stream.append = append  # type: ignore[method-assign]


async def test_a_decision_given_again_whose_append_fails_is_journaled_again_from_the_local_journal(
    restartable: _Restartable, tmp_path: Path
) -> None:
    """Redis goes away between the replay (DECIDE, again) and its append: the entry given again goes
    to the local journal and reaches the stream once Redis is back, with its later answered_at; else
    the issuer keeps its own late approval of the repeat (chaos-money: declines_debited)."""
    first = request(luhn_pan("4993"), amount_minor=100)
    async with engine(restartable.port, tmp_path / "l.db", redis_settings=QUICK) as e:
        decided = await e.decide(first, Reason.ALL_POOLS_FAILED)
        await asyncio.sleep(0.01)  # answered_at has millisecond resolution
        with _again_appends_while_down(e, restartable):
            again = await e.decide(first, Reason.ALL_POOLS_FAILED, maybe_reached_issuer=True)

        async def moved() -> None:
            assert (await e.status()).local_backlog == 0

        await assert_eventually(moved, timeout_s=10)
    entries, _ = await _journaled(restartable.port, first)
    assert again.decision_id == decided.decision_id and again.journal is JournalKind.SQLITE
    assert [(f["decision_id"], f.get("again", "")) for f in entries] == [
        (decided.decision_id, ""),
        (decided.decision_id, "1"),
    ]
    assert entries[1]["answered_at"] > entries[0]["answered_at"]


async def test_a_decision_given_again_that_no_journal_takes_is_still_the_recorded_decision(
    restartable: _Restartable, tmp_path: Path
) -> None:
    """The again entry's append fails and so does the local journal: the repeat is answered with the
    recorded decision (journaled once already), not with a 91 the records contradict."""
    first = request(luhn_pan("4995"), amount_minor=100)
    async with engine(restartable.port, tmp_path / "l.db", redis_settings=QUICK) as e:
        decided = await e.decide(first, Reason.ALL_POOLS_FAILED)
        with sqlite3.connect(tmp_path / "l.db") as db:  # the local journal can record nothing now
            db.execute("DROP TABLE decisions")
        with _again_appends_while_down(e, restartable):
            again = await e.decide(first, Reason.ALL_POOLS_FAILED, maybe_reached_issuer=True)
    assert decided.approved and again.approved
    assert (again.decision_id, again.approval_code) == (decided.decision_id, decided.approval_code)


async def test_a_repeat_declined_again_locally_is_journaled_again_when_moved(tmp_path: Path) -> None:
    """Declined in Redis (advised), the repeat declined again locally while Redis is away: when the
    local decision moves, ABSORB keeps the Redis decision and moves its answered_at to the repeat's,
    and that decision is journaled again (again = 1) with the later answered_at, counted unadvised."""
    port = free_port()
    over = request(luhn_pan("4992"), amount_minor=6_000)  # above the 50.00 window: 61 wherever decided
    pol = policy(purchase=WindowLimit(5_000, 5))
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
    try:
        async with engine(port, tmp_path / "l.db", pol=pol, redis_settings=IMPATIENT) as e:
            in_redis = await e.decide(over, Reason.ALL_POOLS_FAILED)
            await asyncio.to_thread(redis.stop)
            local = await e.decide(over, Reason.ALL_POOLS_FAILED)
            redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
            await e.move_backlog()
        assert (in_redis.journal, local.journal) == (JournalKind.REDIS, JournalKind.SQLITE)
        assert in_redis.response_code == local.response_code == ResponseCode.EXCEEDS_AMOUNT_LIMIT
        entries, unadvised = await _journaled(port, over)
    finally:
        await asyncio.to_thread(redis.stop)
    assert [(f["decision_id"], f.get("again", "")) for f in entries] == [
        (in_redis.decision_id, ""),
        (in_redis.decision_id, "1"),
    ]
    assert entries[1]["answered_at"] > entries[0]["answered_at"]
    assert unadvised in ("2", b"2")


async def test_the_same_request_id_of_another_acquirer_is_another_request(
    redis_port: int, tmp_path: Path
) -> None:
    """Request ids are unique per acquirer: another acquirer's same id is decided on its own."""
    mine = request(PAN_MC, acquirer_id="1001", amount_minor=100)
    theirs = request(PAN_MC, acquirer_id="2002", request_id=mine.request_id, amount_minor=200)
    async with engine(redis_port, tmp_path / "l.db") as e:
        a = await e.decide(mine, Reason.ALL_POOLS_FAILED)
        b = await e.decide(theirs, Reason.ALL_POOLS_FAILED)
    assert a.decision_id != b.decision_id and a.approved and b.approved


async def test_a_reused_request_id_is_refused_locally_too(tmp_path: Path) -> None:
    """With Redis away, the local journal refuses a reused id the same way."""
    first = request(PAN_VISA, amount_minor=100)
    reused = request(PAN_VISA, request_id=first.request_id, amount_minor=200)
    async with engine(free_port(), tmp_path / "l.db", redis_settings=IMPATIENT) as e:
        await e.decide(first, Reason.ALL_POOLS_FAILED)
        with pytest.raises(ReusedRequestIdError):
            await e.decide(reused, Reason.ALL_POOLS_FAILED)


async def test_a_reused_id_refused_locally_after_reaching_the_issuer_is_advised_declined_later(
    tmp_path: Path,
) -> None:
    """Redis away: a reused id refused after an attempt that may have reached an issuer keeps its
    declined advice (94) in the local journal, apart from the request's own row; once Redis is back
    it is journaled and counted unadvised, so the issuer releases what it holds for that content."""
    port = free_port()
    first = request(luhn_pan("4994"), amount_minor=100)
    reused = request(first.pan, request_id=first.request_id, amount_minor=200)
    async with engine(port, tmp_path / "l.db", redis_settings=IMPATIENT) as e:
        decided = await e.decide(first, Reason.ALL_POOLS_FAILED)
        with pytest.raises(ReusedRequestIdError):
            await e.decide(reused, Reason.ALL_POOLS_FAILED, maybe_reached_issuer=True)
        repeat = await e.decide(first, Reason.ALL_POOLS_FAILED)  # the request's own row still answers
        redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
        try:

            async def moved() -> None:
                assert (await e.status()).local_backlog == 0

            await assert_eventually(moved, timeout_s=10)
            entries, unadvised = await _journaled(port, first)
        finally:
            await asyncio.to_thread(redis.stop)
    assert repeat.decision_id == decided.decision_id
    assert [(f["amount_minor"], f["response_code"]) for f in entries] == [("100", "00"), ("200", "94")]
    assert unadvised in ("2", b"2")


@pytest.mark.parametrize("order", ["told-last-moves-first", "told-last-moves-last"])
async def test_the_decision_told_last_wins_after_a_lost_reply_and_a_local_repeat(
    redis_port: int, order: str
) -> None:
    """A lost DECIDE approves (told nobody), its gateway says 91, another approves the repeat locally
    later: whichever moves first, the record ends approved at the repeat's answer time (advised last)."""
    req = request(luhn_pan("4973"), amount_minor=1_000)
    token, assessment = CardTokenizer(TOKEN_KEY).token(req.pan), assess(policy(), req)
    r = client(redis_port)
    counters = RedisCounters(RedisGate(r, timedelta(seconds=2)), window=timedelta(hours=1),
                             idempotency_ttl=timedelta(hours=1))  # fmt: skip
    try:
        t = 0  # the lost call's own answer time (Redis's clock) comes back in its outcome
        proposal = Proposal("lost-call", "A1B2C3", "low", Reason.ALL_POOLS_FAILED, "gw-a", t)
        lost = await counters.decide(token, req, "dg", assessment, proposal)
        t = lost.answered_ms
        said_91 = Outcome(True, "told-91", ResponseCode.ISSUER_UNAVAILABLE, REPLY_LOST_RULE, "", "low",
                          Reason.ALL_POOLS_FAILED, t + 10, "gw-a", t + 10)  # fmt: skip
        said_00 = Outcome(True, "told-00", ResponseCode.APPROVED, "approved", "D4E5F6", "low",
                          Reason.ALL_POOLS_FAILED, t + 20, "gw-b", t + 20)  # fmt: skip
        moves = [(said_00, ""), (said_91, "lost-call")]
        for outcome, lost_call in moves if order == "told-last-moves-first" else moves[::-1]:
            await counters.absorb(
                token, acquirer_id=req.acquirer_id, request_id=req.request_id, digest="dg",
                kind=assessment.kind, amount_minor=1_000, txn_amount_minor=1_000, outcome=outcome,
                now_ms=t + 30, lost_call=lost_call,
            )  # fmt: skip
        record = await r.hmget(idempotency_key(token, req.acquirer_id, req.request_id),
                               ["response_code", "answered_at_ms"])  # fmt: skip
    finally:
        await r.aclose()
    assert record == [b"00", str(t + 20).encode()]
