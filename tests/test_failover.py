"""Failover under load with real issuer-sim processes: crash, hang, slow, decline storm, flap.

Two pools of two simulator hosts share one issuer ledger (a real Redis); each
test checks every request it sent against that ledger's books (chaos.verify):
posted once, ending where its acquirer holds it, nothing posted for no request.
A gateway runs in-process so the tests can read its router's attempt counters.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from authgw.v1 import simulator_pb2
from chaos.acquirer import Acquirer
from chaos.load import CardMix, Sample, run_open_loop
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.sim_control import SimControl
from chaos.verify import compare
from gateway.app import Gateway
from tests.gateway_fixtures import gateway_config
from tests.helpers import assert_eventually

ATTEMPT_TIMEOUT_S = 0.3
DEADLINE_S = 2.0
REVERSALS_WAIT_S = 20.0
POOLS = {"primary": ("a1", "a2"), "secondary": ("b1", "b2")}


@pytest.fixture(scope="module")
def sims(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess
) -> Iterator[dict[str, ManagedProcess]]:
    """Four simulator processes, two per pool, sharing a ledger in Redis db 1."""
    workdir = tmp_path_factory.mktemp("sims")
    ledger = f"redis://127.0.0.1:{redis_server.port}/1"
    procs: dict[str, ManagedProcess] = {}
    for pool, members in POOLS.items():
        for member in members:
            port = free_port()
            args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", pool, "--member", member]
            procs[member] = start_authgw(workdir, member, [*args, "--ledger", ledger], port)
    yield procs
    for proc in procs.values():
        proc.stop()


def _config(sims: dict[str, ManagedProcess], **routing: float):  # type: ignore[no-untyped-def]
    return gateway_config(
        [(pool, [sims[m].address for m in members]) for pool, members in POOLS.items()],
        extra={
            "routing": {
                "attempt_timeout": f"{int(ATTEMPT_TIMEOUT_S * 1000)}ms",
                "deadline": f"{int(DEADLINE_S * 1000)}ms",
                **routing,
            },
            "decline_storm": {"min_requests": 8, "cooloff": "10s"},  # no half-open trial during a test
        },
    )


@pytest.fixture
async def gateway(sims: dict[str, ManagedProcess], redis_server: ManagedProcess) -> AsyncIterator[Gateway]:
    """A fresh in-process gateway; afterwards every simulator is healthy again and the ledger empty."""
    redis.Redis(port=redis_server.port, db=1).flushdb()
    gw = Gateway(_config(sims))
    await gw.start()
    yield gw
    await gw.close()
    for proc in sims.values():
        if not proc.alive():
            proc.start()
        proc.signal(signal.SIGCONT)
        async with SimControl(proc.address) as ctl:
            await ctl.set_faults()
    await _wait_ledger_quiet(sims)  # late holds land before the next test flushes the ledger


async def _load(gw: Gateway, seconds: float, rate: float = 100.0) -> list[Sample]:
    """Open-loop load; the acquirer's timeout reversals (a request left unanswered), and the gateway's
    own after its 91s (no stand-in: gateway.late_reversal), are delivered until acknowledged, or for
    REVERSALS_WAIT_S, before it closes (the money check needs them)."""
    mix = CardMix(cards=200)
    assert gw.late_reversals is not None
    async with Acquirer([f"127.0.0.1:{gw.port}"], deadline_s=DEADLINE_S) as acquirer:
        samples = await acquirer.run(rate, seconds, mix.request)
        for _ in range(int(REVERSALS_WAIT_S * 10)):  # any left unacknowledged show as unsettled
            if not acquirer.pending_reversals and not gw.late_reversals.pending:
                break
            await asyncio.sleep(0.1)
    return samples


async def _assert_each_posted_once(sims: dict[str, ManagedProcess], samples: list[Sample]) -> None:
    """Per request, against the issuer's shared books (chaos.verify): each book ends where its acquirer
    holds it, posted once, and no book or card debit belongs to no request of the test.

    `samples` must be every request the test sent: a load whose samples are dropped leaves books that
    count as postings no request explains. Late issuer answers land before the books are read."""
    await _wait_ledger_quiet(sims)
    proc = next(p for p in sims.values() if p.alive())
    async with SimControl(proc.address) as ctl:
        ledger = await ctl.books()
    check = compare(samples, ledger.books, ledger.unexplained)
    assert check.settled, check.unsettled
    assert check.figures() == dict.fromkeys(check.figures(), 0), check.examples  # each tells its request
    assert check.books > 0


async def _wait_ledger_quiet(sims: dict[str, ManagedProcess], quiet_s: float = 0.8) -> None:
    """Until no host received or decided an Authorize for quiet_s (longer than the slow test's latency):
    hosts resumed from SIGSTOP, or slowed, answer what they were sent late, and their holds must land
    in this test's ledger, not in the next test's (the fixture flushes it first)."""
    seen: list[int] = []
    while len(seen) < 2 or seen[-1] != seen[-2]:
        await asyncio.sleep(quiet_s)
        total = 0
        for proc in sims.values():
            if proc.alive():
                async with SimControl(proc.address) as ctl:
                    r = await ctl.report()
                total += r.authorize_calls + r.approvals + r.declines + r.repeated_request_ids
        seen.append(total)


def _assert_all_answered_by_issuer(samples: list[Sample]) -> None:
    failed = [s for s in samples if not s.answered]
    assert not failed, f"{len(failed)} requests failed, e.g. {failed[:3]}"
    late = [s for s in samples if s.latency_s > DEADLINE_S]
    assert not late, f"{len(late)} answers after the deadline"
    standin = [s for s in samples if s.source != "ISSUER"]
    assert not standin, f"{len(standin)} requests not answered by an issuer, e.g. {standin[:3]}"


async def _fault_during_load(gw: Gateway, fault: object, seconds: float = 3.0) -> list[Sample]:
    load = asyncio.create_task(_load(gw, seconds))
    await asyncio.sleep(0.5)
    await fault() if asyncio.iscoroutinefunction(fault) else fault()  # type: ignore[operator]
    return await load


async def _primary_attempts_during(gw: Gateway, seconds: float, samples: list[Sample]) -> int:
    """Attempts on the primary during a load of `seconds`; its requests are added to `samples`."""
    before = sum(n for (pool, _), n in gw.router.attempts.items() if pool == "primary")
    samples += await _load(gw, seconds)
    return sum(n for (pool, _), n in gw.router.attempts.items() if pool == "primary") - before


async def test_primary_crash_fails_over(gateway: Gateway, sims: dict[str, ManagedProcess]) -> None:
    """SIGKILL of every primary host: every request is answered by an issuer, most by the secondary."""

    def crash() -> None:
        sims["a1"].kill()
        sims["a2"].kill()

    samples = await _fault_during_load(gateway, crash)
    await _assert_each_posted_once(sims, samples)
    _assert_all_answered_by_issuer(samples)
    assert Counter(s.pool for s in samples if s.sent_at > 1.0)["secondary"] > 100


async def test_primary_hang_fails_over_then_stops_waiting(
    gateway: Gateway, sims: dict[str, ManagedProcess]
) -> None:
    """SIGSTOP of every primary host: all answered in time; once ejected, no request tries the primary."""

    def hang() -> None:
        sims["a1"].signal(signal.SIGSTOP)
        sims["a2"].signal(signal.SIGSTOP)

    samples = await _fault_during_load(gateway, hang)
    during = list(samples)
    primary_attempts = await _primary_attempts_during(gateway, 1.0, samples)
    sims["a1"].signal(signal.SIGCONT)
    sims["a2"].signal(signal.SIGCONT)
    await _assert_each_posted_once(sims, samples)  # the held requests answered late, after SIGCONT
    _assert_all_answered_by_issuer(during)
    assert primary_attempts == 0


async def test_slow_primary_fails_over(gateway: Gateway, sims: dict[str, ManagedProcess]) -> None:
    """A primary answering after the attempt timeout is treated as failing; nothing fails."""

    async def slow() -> None:
        for m in ("a1", "a2"):
            async with SimControl(sims[m].address) as ctl:
                await ctl.set_faults(latency_ms=int(ATTEMPT_TIMEOUT_S * 1000) + 200)

    samples = await _fault_during_load(gateway, slow)
    during = list(samples)
    primary_attempts = await _primary_attempts_during(gateway, 1.0, samples)

    async def late_recorded() -> None:
        assert gateway.router.late.total > 0  # the slow answers land in the late-answer record

    await assert_eventually(late_recorded, timeout_s=5)
    await _assert_each_posted_once(sims, samples)  # late approvals included
    _assert_all_answered_by_issuer(during)
    assert primary_attempts == 0


async def test_decline_storm_moves_traffic(gateway: Gateway, sims: dict[str, ManagedProcess]) -> None:
    """A primary answering 96 to everything: no 96 reaches the acquirer, traffic moves to the secondary."""

    async def storm() -> None:
        for m in ("a1", "a2"):
            async with SimControl(sims[m].address) as ctl:
                await ctl.set_faults(decline_code="96")

    samples = await _fault_during_load(gateway, storm)
    during = list(samples)
    primary_attempts = await _primary_attempts_during(gateway, 1.0, samples)
    await _assert_each_posted_once(sims, samples)
    _assert_all_answered_by_issuer(during)
    assert not [s for s in during if s.response_code == "96"]
    assert primary_attempts == 0


async def test_flapping_primary(gateway: Gateway, sims: dict[str, ManagedProcess]) -> None:
    """A primary hanging and resuming every 0.5 s: every request still answered by an issuer in time."""

    async def flap() -> None:
        for i in range(6):
            sig = signal.SIGSTOP if i % 2 == 0 else signal.SIGCONT
            sims["a1"].signal(sig)
            sims["a2"].signal(sig)
            await asyncio.sleep(0.5)

    load = asyncio.create_task(_load(gateway, 3.5))
    await asyncio.sleep(0.3)
    await flap()
    samples = await load
    await _assert_each_posted_once(sims, samples)
    _assert_all_answered_by_issuer(samples)
    assert gateway.router.budget.retries_in_flight == 0


async def test_failover_from_a_failing_pool_needs_no_retry_budget(
    gateway: Gateway, sims: dict[str, ManagedProcess]
) -> None:
    """Requests caught on a primary that hangs move to the secondary once the primary is judged failing.

    With no retry budget at all, only the requests that time out before the pool verdict flips
    (consecutive_failures - 1 = 4) may go without an issuer answer; moving on from a failing pool
    is failover, which the budget does not limit (a burst of timeouts must not become declines).
    """
    await gateway.close()
    gw = Gateway(_config(sims, retry_budget_ratio=0, retry_budget_min=0))
    await gw.start()
    try:
        sims["a1"].signal(signal.SIGSTOP)
        sims["a2"].signal(signal.SIGSTOP)
        samples = await run_open_loop(
            f"127.0.0.1:{gw.port}",
            rate_per_s=1000,
            duration_s=0.02,
            make_request=CardMix(cards=50).request,
            deadline_s=DEADLINE_S,
        )
    finally:
        await gw.close()
    assert len(samples) >= 15
    by_secondary = [s for s in samples if s.source == "ISSUER" and s.pool == "secondary"]
    assert len(by_secondary) >= len(samples) - 4, Counter((s.source, s.pool) for s in samples)
    assert gw.router.budget.denied <= 4


async def test_faults_reset_between_tests(sims: dict[str, ManagedProcess]) -> None:
    """The fixture leaves simulators without faults (guards the other tests' premises)."""
    for proc in sims.values():
        async with SimControl(proc.address) as ctl:
            report = await ctl.report()
        assert report.faults == simulator_pb2.Faults()
