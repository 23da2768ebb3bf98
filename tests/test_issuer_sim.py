"""The issuer host simulator, as real `python -m chaos issuer-sim` processes on loopback.

Each test starts its own simulator(s) on free ports; the shared-ledger tests
point two of them at the session's real Redis. Cards are fresh random PANs
(their opening balance comes from `card_profile`) or the documented special
PANs, so no test depends on another's holds. The money contract (books,
advices, reversals) is tested in tests/test_oracle_issuer_*.py.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2
from test_oracle_support import Sim, StartSim, fresh_pan, rpc_error, sim_fleet

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import simulator_pb2
from chaos.card_profiles import (
    LARGE_BALANCE_MINOR,
    LOW_BALANCE_MINOR,
    PAN_BLOCKED,
    PAN_LOST,
    PAN_LOW_BALANCE,
    PAN_STOLEN,
    WELL_KNOWN_TEST_PANS,
    CardStatus,
    card_profile,
    luhn_valid,
)
from chaos.ledger_protocol import AdviceEntry, Ledger
from chaos.memory_ledger import MemoryLedger
from chaos.processes import ManagedProcess, free_port
from chaos.redis_ledger import RedisLedger
from chaos.sim_faults import faults_problem
from tests.helpers import PAN_VISA, assert_eventually

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def start_sim(tmp_path: Path) -> AsyncIterator[StartSim]:
    """Start simulators with extra CLI arguments; all are stopped after the test."""
    async with sim_fleet(tmp_path) as start:
        yield start


@pytest.fixture
async def sim(start_sim: StartSim) -> Sim:
    """One simulator with its private in-memory ledger."""
    return await start_sim()


@pytest.fixture
def ledger_url(redis_server: ManagedProcess) -> str:
    """The session Redis as a shared ledger (fresh PANs and ids keep tests apart)."""
    return f"redis://127.0.0.1:{redis_server.port}/9"


NON_LUHN_PAN = "4111111111111112"


# --- card profiles (pure functions) ---------------------------------------------------------------


def test_card_profile_is_deterministic_and_mostly_active() -> None:
    """Profiles depend only on the PAN; balances lie in 200.00..5000.00; a few percent are not active."""
    pans = [f"{n:016d}" for n in range(4_000)]
    profiles = [card_profile(p) for p in pans]
    assert profiles == [card_profile(p) for p in pans]
    assert all(20_000 <= p.balance_minor <= 500_000 for p in profiles)
    inactive = sum(p.status is not CardStatus.ACTIVE for p in profiles) / len(profiles)
    assert 0.01 < inactive < 0.08


def test_special_pans_have_documented_profiles() -> None:
    """Well-known test PANs are active and rich; the special PANs have their documented fate."""
    assert all(card_profile(p) == (LARGE_BALANCE_MINOR, CardStatus.ACTIVE) for p in WELL_KNOWN_TEST_PANS)
    assert card_profile(PAN_BLOCKED).status is CardStatus.BLOCKED
    assert card_profile(PAN_LOST).status is CardStatus.LOST
    assert card_profile(PAN_STOLEN).status is CardStatus.STOLEN
    assert card_profile(PAN_LOW_BALANCE) == (LOW_BALANCE_MINOR, CardStatus.ACTIVE)
    assert all(
        luhn_valid(p) for p in [*WELL_KNOWN_TEST_PANS, PAN_BLOCKED, PAN_LOST, PAN_STOLEN, PAN_LOW_BALANCE]
    )


def test_faults_problem_rejects_out_of_range_faults() -> None:
    """Rates outside 0..1, negative latency and non-decline codes are refused."""
    assert faults_problem(simulator_pb2.Faults(latency_ms=10, error_rate=0.5, decline_code="96")) is None
    assert faults_problem(simulator_pb2.Faults(error_rate=1.5)) is not None
    assert faults_problem(simulator_pb2.Faults(latency_ms=-1)) is not None
    assert faults_problem(simulator_pb2.Faults(decline_code="00")) is not None
    assert faults_problem(simulator_pb2.Faults(decline_code="9X")) is not None


# --- decisions ------------------------------------------------------------------------------------


async def test_approval_holds_the_amount(sim: Sim) -> None:
    """An approval carries a 6-character code and the ISSUER source, and reduces the available balance."""
    first = await sim.authorize(PAN_LOW_BALANCE, 6_000, request_id="hold-1")
    assert (first.decision, first.response_code, first.source) == (pb.APPROVED, "00", pb.ISSUER)
    assert len(first.approval_code) == 6
    assert first.approval_code.isalnum()
    assert (first.request_id, first.pool, first.member) == ("hold-1", "p1", "m1")
    assert first.decision_id
    second = await sim.authorize(PAN_LOW_BALANCE, LOW_BALANCE_MINOR - 6_000 + 1)
    assert (second.decision, second.response_code, second.approval_code) == (pb.DECLINED, "51", "")


async def test_amount_over_available_declines_51(sim: Sim) -> None:
    """An amount over the opening balance is declined 51 and holds nothing."""
    pan, balance = fresh_pan()
    assert (await sim.authorize(pan, balance + 1)).response_code == "51"
    assert (await sim.authorize(pan, balance)).response_code == "00"


@pytest.mark.parametrize(("pan", "code"), [(PAN_BLOCKED, "05"), (PAN_LOST, "41"), (PAN_STOLEN, "43")])
async def test_card_status_declines(sim: Sim, pan: str, code: str) -> None:
    """Blocked, lost and stolen cards are declined 05, 41 and 43."""
    response = await sim.authorize(pan, 100)
    assert (response.decision, response.response_code) == (pb.DECLINED, code)


async def test_repeated_request_id_gets_same_answer_and_holds_once(sim: Sim) -> None:
    """A repeated request_id gets the identical answer and the amount is held only once."""
    first = await sim.authorize(PAN_LOW_BALANCE, 6_000, request_id="same-1")
    again = await sim.authorize(PAN_LOW_BALANCE, 6_000, request_id="same-1")
    assert again == first
    assert (await sim.authorize(PAN_LOW_BALANCE, LOW_BALANCE_MINOR - 6_000)).response_code == "00"
    report = await sim.control.report()
    assert (report.approvals, report.repeated_request_ids) == (2, 1)
    assert list(report.approved_request_ids).count("same-1") == 1


# --- advices --------------------------------------------------------------------------------------


async def test_repeated_advice_is_duplicate_and_debited_once(sim: Sim) -> None:
    """The same decision_id twice: the second ack says duplicate, the card is debited once."""
    pan, balance = fresh_pan()
    assert not (await sim.advise("adv-1", pan, balance - 1_000)).duplicate
    assert (await sim.advise("adv-1", pan, balance - 1_000)).duplicate
    assert (await sim.authorize(pan, 1_000)).response_code == "00"
    assert (await sim.authorize(pan, 1)).response_code == "51"
    report = await sim.control.report()
    assert (report.advise_calls, report.duplicate_advices) == (2, 1)
    [record] = report.advices
    assert (record.decision_id, record.received, record.applied) == ("adv-1", 2, True)
    assert (record.amount_minor, record.response_code) == (balance - 1_000, "00")


async def test_declined_advice_is_recorded_never_debited(sim: Sim) -> None:
    """A declined stand-in decision is recorded, not applied, and leaves the balance whole."""
    pan, balance = fresh_pan()
    assert not (await sim.advise("adv-declined", pan, balance, approved=False)).duplicate
    assert (await sim.authorize(pan, balance)).response_code == "00"
    [record] = (await sim.control.report()).advices
    assert (record.received, record.applied, record.response_code) == (1, False, "05")


def _advice(**overrides: object) -> pb.StandInAdvice:
    fields: dict[str, object] = {
        "decision_id": "poison",
        "request": pb.AuthorizeRequest(request_id="r", pan=PAN_VISA, amount_minor=100),
        "decision": pb.APPROVED,
        "response_code": "00",
    }
    fields.update(overrides)
    return pb.StandInAdvice(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("advice", "why"),
    [
        (_advice(decision_id=""), "decision_id"),
        (_advice(request=None), "missing request"),
        (
            _advice(request=pb.AuthorizeRequest(request_id="r", pan="4111111111111112", amount_minor=1)),
            "Luhn",
        ),
        (_advice(request=pb.AuthorizeRequest(request_id="r", pan=PAN_VISA, amount_minor=0)), "amount"),
    ],
    ids=["empty-decision-id", "missing-request", "non-luhn-pan", "zero-amount"],
)
async def test_poison_advice_is_invalid_argument(sim: Sim, advice: pb.StandInAdvice, why: str) -> None:
    """A malformed advice is refused with INVALID_ARGUMENT and recorded nowhere."""
    error = await rpc_error(sim.send_advice(advice))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "poison advice" in (error.details() or "")
    assert why in (error.details() or "")
    assert not (await sim.control.report()).advices


@pytest.mark.parametrize("ledger", ["memory", "redis"])
async def test_advices_of_one_card_accepted_in_any_order(
    start_sim: StartSim, ledger_url: str, ledger: str
) -> None:
    """Advices of one card arriving out of decision order are all accepted and reported in arrival order."""
    extra = ["--ledger", ledger_url] if ledger == "redis" else []
    sim = await start_sim(*extra)
    pan, _ = fresh_pan()
    ids = [f"adv-{n}-{uuid.uuid4().hex}" for n in (3, 1, 2)]
    for decision_id in ids:
        assert not (await sim.advise(decision_id, pan, 100)).duplicate
    reported = [a.decision_id for a in (await sim.control.report()).advices if a.decision_id in ids]
    assert reported == ids


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_ledger_keeps_per_card_advice_order(ledger_url: str, kind: str) -> None:
    """Ledger.advice_order lists one card's decision_ids in arrival order, apart from other cards'."""
    ledger: Ledger = RedisLedger.from_url(ledger_url) if kind == "redis" else MemoryLedger()
    (pan, _), (other, _) = fresh_pan(), fresh_pan()
    ids = [f"adv-{n}-{uuid.uuid4().hex}" for n in (2, 1, 3)]
    try:
        for decision_id in ids:
            await ledger.advise(AdviceEntry(decision_id, pan, True, 10, "00"))
            await ledger.advise(AdviceEntry(f"other-{decision_id}", other, True, 10, "00"))
        assert await ledger.advise(AdviceEntry(ids[0], pan, True, 10, "00"))  # a duplicate keeps its place
        assert await ledger.advice_order(pan) == ids
    finally:
        await ledger.close()


async def test_uvloop_flag_serves(start_sim: StartSim) -> None:
    """--uvloop runs the same simulator on uvloop."""
    sim = await start_sim("--uvloop")
    assert (await sim.authorize(PAN_VISA, 100)).response_code == "00"


# --- faults ---------------------------------------------------------------------------------------


async def test_latency_fault_delays_answers(sim: Sim) -> None:
    """latency_ms set at run time delays every Authorize by at least that much."""
    applied = await sim.control.set_faults(latency_ms=300)
    assert applied.latency_ms == 300
    started = time.monotonic()
    assert (await sim.authorize(PAN_VISA, 100)).response_code == "00"
    assert time.monotonic() - started >= 0.3


async def test_error_rate_fault_fails_with_unavailable(sim: Sim) -> None:
    """error_rate 1 fails every Authorize and Advise with UNAVAILABLE; 0 lets them through again."""
    await sim.control.set_faults(error_rate=1.0)
    assert (await rpc_error(sim.authorize(PAN_VISA, 100))).code() == grpc.StatusCode.UNAVAILABLE
    assert (await rpc_error(sim.advise("adv-e", PAN_VISA, 100))).code() == grpc.StatusCode.UNAVAILABLE
    await sim.control.clear_faults()
    assert (await sim.authorize(PAN_VISA, 100)).response_code == "00"


async def test_partial_error_rate_fails_some_calls(sim: Sim) -> None:
    """error_rate 0.5 fails some calls and lets others through."""
    await sim.control.set_faults(error_rate=0.5)
    codes = []
    for _ in range(60):
        try:
            codes.append((await sim.authorize(PAN_VISA, 1)).response_code)
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code().name)
    assert "00" in codes
    assert "UNAVAILABLE" in codes


async def test_decline_storm_declines_every_authorize(sim: Sim) -> None:
    """decline_code 96 declines every Authorize with 96, even for a rich active card."""
    await sim.control.set_faults(decline_code="96")
    response = await sim.authorize(PAN_VISA, 100)
    assert (response.decision, response.response_code, response.source) == (pb.DECLINED, "96", pb.ISSUER)


async def test_decline_storm_answers_are_not_remembered(sim: Sim) -> None:
    """A request_id declined by the storm gets the real decision once the storm is over."""
    await sim.control.set_faults(decline_code="96")
    assert (await sim.authorize(PAN_VISA, 100, request_id="storm-1")).response_code == "96"
    await sim.control.clear_faults()
    assert (await sim.authorize(PAN_VISA, 100, request_id="storm-1")).response_code == "00"


async def test_advise_reject_rate_fails_advices_with_failed_precondition(sim: Sim) -> None:
    """advise_reject_rate 1 rejects every Advise with FAILED_PRECONDITION and records none."""
    pan, _ = fresh_pan()
    await sim.control.set_faults(advise_reject_rate=1.0)
    assert (await rpc_error(sim.advise("adv-r", pan, 100))).code() == grpc.StatusCode.FAILED_PRECONDITION
    await sim.control.clear_faults()
    assert not (await sim.advise("adv-r", pan, 100)).duplicate


async def test_invalid_faults_are_refused(sim: Sim) -> None:
    """SetFaults with an error rate above 1 is INVALID_ARGUMENT and changes nothing."""
    error = await rpc_error(sim.control.set_faults(error_rate=2.0))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await sim.control.report()).faults == simulator_pb2.Faults()


async def test_health_reports_serving(sim: Sim) -> None:
    """Health/Check answers SERVING for the server and for authgw.v1.IssuerHost."""
    assert await sim.health("") == health_pb2.HealthCheckResponse.SERVING
    assert await sim.health("authgw.v1.IssuerHost") == health_pb2.HealthCheckResponse.SERVING


async def test_hang_holds_calls_until_cleared(sim: Sim) -> None:
    """While hung, Authorize, Advise and Health/Check answer nothing but control does; clearing resumes."""
    await sim.control.set_faults(hang=True)
    deadline = grpc.StatusCode.DEADLINE_EXCEEDED
    assert (await rpc_error(sim.authorize(PAN_VISA, 100, timeout_s=0.3))).code() == deadline
    assert (await rpc_error(sim.advise("adv-h", PAN_VISA, 100, timeout_s=0.3))).code() == deadline
    assert (await rpc_error(sim.health(timeout_s=0.3))).code() == deadline
    assert (await sim.control.report()).faults.hang
    await sim.control.clear_faults()
    assert (await sim.authorize(PAN_VISA, 100)).response_code == "00"
    assert await sim.health() == health_pb2.HealthCheckResponse.SERVING


async def test_hung_call_is_answered_when_hang_clears(sim: Sim) -> None:
    """A call waiting on a hung host is answered once hang is cleared, within its deadline."""
    await sim.control.set_faults(hang=True)
    call = asyncio.ensure_future(sim.authorize(PAN_VISA, 100, timeout_s=5.0))

    async def calls_arrived() -> None:
        assert (await sim.control.report()).authorize_calls == 1

    await assert_eventually(calls_arrived)
    assert not call.done()
    await sim.control.clear_faults()
    assert (await call).response_code == "00"


async def test_sigusr1_toggles_hang(sim: Sim) -> None:
    """SIGUSR1 hangs the host, a second SIGUSR1 releases it."""

    async def hang_is(expected: bool) -> None:
        assert (await sim.control.report()).faults.hang is expected

    sim.proc.signal(signal.SIGUSR1)
    await assert_eventually(lambda: hang_is(True))
    error = await rpc_error(sim.authorize(PAN_VISA, 100, timeout_s=0.3))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    sim.proc.signal(signal.SIGUSR1)
    await assert_eventually(lambda: hang_is(False))
    assert (await sim.authorize(PAN_VISA, 100)).response_code == "00"


async def test_sigusr2_toggles_decline_storm(sim: Sim) -> None:
    """SIGUSR2 starts a 96 decline storm, a second SIGUSR2 ends it."""

    async def code_is(expected: str) -> None:
        assert (await sim.authorize(PAN_VISA, 100)).response_code == expected

    sim.proc.signal(signal.SIGUSR2)
    await assert_eventually(lambda: code_is("96"))
    sim.proc.signal(signal.SIGUSR2)
    await assert_eventually(lambda: code_is("00"))


async def test_faults_from_flags_apply_at_start(start_sim: StartSim) -> None:
    """--decline-code at start declines from the first call and shows in the report."""
    sim = await start_sim("--decline-code", "05", "--latency-ms", "1")
    assert (await sim.authorize(PAN_VISA, 100)).response_code == "05"
    faults = (await sim.control.report()).faults
    assert (faults.decline_code, faults.latency_ms) == ("05", 1)


async def test_sigterm_stops_gracefully_without_pan_in_logs(sim: Sim) -> None:
    """SIGTERM exits 0 after logging the stop; no full PAN ever reaches the log."""
    await sim.authorize(PAN_LOW_BALANCE, 1)
    await sim.advise("adv-log", PAN_VISA, 1)
    sim.proc.stop()
    assert sim.proc.proc is not None
    assert sim.proc.proc.returncode == 0
    log = sim.proc.tail_log(200)
    assert "stopped" in log
    assert PAN_LOW_BALANCE not in log
    assert PAN_VISA not in log


# --- shared ledger --------------------------------------------------------------------------------


async def test_shared_ledger_dedupes_request_ids_across_hosts(start_sim: StartSim, ledger_url: str) -> None:
    """A request_id approved by one host is answered identically by another, held once."""
    a = await start_sim("--ledger", ledger_url, pool="primary", member="a1")
    b = await start_sim("--ledger", ledger_url, pool="secondary", member="b1")
    pan, balance = fresh_pan()
    request_id = uuid.uuid4().hex
    first = await a.authorize(pan, balance - 500, request_id=request_id)
    assert first.response_code == "00"
    assert await b.authorize(pan, balance - 500, request_id=request_id) == first
    assert (await b.authorize(pan, 500)).response_code == "00"
    assert (await a.authorize(pan, 1)).response_code == "51"
    report_a, report_b = await a.control.report(), await b.control.report()
    assert list(report_a.approved_request_ids) == [request_id]
    assert request_id not in report_b.approved_request_ids
    assert report_b.repeated_request_ids == 1


async def test_shared_ledger_dedupes_decision_ids_across_hosts(start_sim: StartSim, ledger_url: str) -> None:
    """An advice replayed to another host is a duplicate there and is debited once issuer-wide."""
    a = await start_sim("--ledger", ledger_url, pool="primary", member="a1")
    b = await start_sim("--ledger", ledger_url, pool="secondary", member="b1")
    pan, balance = fresh_pan()
    decision_id = f"adv-{uuid.uuid4().hex}"
    assert not (await a.advise(decision_id, pan, balance - 700)).duplicate
    assert (await b.advise(decision_id, pan, balance - 700)).duplicate
    assert (await b.authorize(pan, 700)).response_code == "00"
    assert (await a.authorize(pan, 1)).response_code == "51"
    records = {r.decision_id: r for r in (await a.control.report()).advices}
    assert (records[decision_id].received, records[decision_id].applied) == (2, True)
    assert (await b.control.report()).duplicate_advices == 1


async def test_dead_ledger_fails_fast_with_unavailable(start_sim: StartSim) -> None:
    """With its ledger Redis unreachable, Authorize fails with UNAVAILABLE well within a second."""
    sim = await start_sim("--ledger", f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    error = await rpc_error(sim.authorize(PAN_VISA, 100, timeout_s=5.0))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 1.0
