"""Money safety through the gateway: short deadlines, refusals, cancellations, reversals (real processes).

Two pools of one issuer-sim each, stand-in on the session Redis, an in-process gateway
called over gRPC on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.sim_control import SimControl
from chaos.topology import standin_toml
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.pool_health import PoolVerdict
from gateway.standin_link import StandInFallback
from health import Mode
from standin import StandInError
from standin.balances import BalanceSettings
from standin.types import Reason
from tests.gateway_fixtures import auth_request
from tests.helpers import PAN_VISA, assert_eventually

PAN_100 = "4000000000009995"  # the simulator's card with 100.00 available: 51 above that
_ids = itertools.count()


def _rid() -> str:
    return f"money-{time.monotonic_ns()}-{next(_ids)}"


@pytest.fixture(scope="module")
def standin_file(tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess) -> Path:
    path = tmp_path_factory.mktemp("money") / "standin.toml"
    path.write_text(standin_toml(f"redis://127.0.0.1:{redis_server.port}/0"))
    return path


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ManagedProcess]]:
    workdir = tmp_path_factory.mktemp("money-sims")
    procs = {}
    for pool, member in (("primary", "a1"), ("secondary", "b1")):
        port = free_port()
        args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", pool, "--member", member]
        procs[member] = start_authgw(workdir, member, args, port)
    yield procs
    for p in procs.values():
        p.stop()


@pytest.fixture
async def gateway(
    sims: dict[str, ManagedProcess], standin_file: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Gateway]:
    """An in-process gateway with stand-in; simulators healthy again afterwards.

    Marks: `no_settlement` (stand-in decisions are not advised: their advice "has not arrived
    yet"), `no_reuse_check` ([standin] reuse_check = false).
    """
    doc: dict[str, Any] = {
        "gateway": {"listen": f"127.0.0.1:{free_port()}", "instance": "gw-money"},
        **PLAINTEXT,
        "routing": {"attempt_timeout": "400ms"},
        "settlement": {"enabled": request.node.get_closest_marker("no_settlement") is None},
        "standin": {
            "config": str(standin_file),
            "sqlite_path": str(standin_file.parent / "gw-money.sqlite3"),
            "reuse_check": request.node.get_closest_marker("no_reuse_check") is None,
        },
        "pools": [
            {"name": "primary", "priority": 1, "members": [{"name": "a1", "address": sims["a1"].address}]},
            {"name": "secondary", "priority": 2, "members": [{"name": "b1", "address": sims["b1"].address}]},
        ],
    }
    gw = Gateway(parse_config(doc, str(standin_file.parent / "gateway.toml")))
    await gw.start()
    yield gw
    await gw.close()
    for p in sims.values():
        p.signal(signal.SIGCONT)
        async with SimControl(p.address) as ctl:
            await ctl.set_faults()


@pytest.fixture
async def stub(gateway: Gateway) -> AsyncIterator[pb_grpc.AuthorizationStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield pb_grpc.AuthorizationStub(channel)


async def test_a_short_client_deadline_gets_the_issuer(stub: pb_grpc.AuthorizationStub) -> None:
    """160 ms to a healthy pool: the issuer answers (51 for 150.00 on a 100.00 card), not stand-in."""
    req = auth_request(request_id=_rid(), pan=PAN_100, amount_minor=15_000)
    resp = await stub.Authorize(req, timeout=0.16)
    assert (resp.source, resp.response_code, resp.standin_reason) == (pb.ISSUER, "51", pb.NONE)


async def test_attempts_cut_short_by_the_client_count_against_no_issuer(
    gateway: Gateway, sims: dict[str, ManagedProcess], stub: pb_grpc.AuthorizationStub
) -> None:
    """An issuer slower than the client's deadline: 91 CLIENT_DEADLINE; the member stays in, the pool OK."""
    async with SimControl(sims["a1"].address) as ctl:
        await ctl.set_faults(latency_ms=250)
    answers = [await stub.Authorize(auth_request(request_id=_rid()), timeout=0.15) for _ in range(12)]
    assert {(a.response_code, a.standin_reason) for a in answers} == {("91", pb.CLIENT_DEADLINE)}
    primary = next(p for p in gateway.router.pools if p.name == "primary")
    assert primary.health.verdict is PoolVerdict.OK
    assert primary.ejected_count(time.monotonic()) == 0
    assert not gateway.standin_mode.active


async def test_a_repeat_given_the_stand_in_decision_again_is_advised_again(
    sims: dict[str, ManagedProcess], stub: pb_grpc.AuthorizationStub
) -> None:
    """The issuer answers after the client's deadline: each send is a 91 from stand-in while the issuer
    approves late. The repeat is forwarded after the first 91's answered_at, so the issuer's own answer
    to it would win unless the 91, given again, is advised again with its later answered_at: the book
    must end at 0 (chaos-money counted these as declines debited)."""
    async with SimControl(sims["a1"].address) as ctl:
        await ctl.set_faults(latency_ms=250)
    req = auth_request(request_id=_rid())
    answers = [await stub.Authorize(req, timeout=0.15) for _ in range(2)]
    assert {(a.response_code, a.standin_reason) for a in answers} == {("91", pb.CLIENT_DEADLINE)}
    assert answers[0].decision_id == answers[1].decision_id  # the repeat: the recorded decision again

    async def settled_at_zero() -> None:
        async with SimControl(sims["a1"].address) as ctl:
            ledger = await ctl.books()
        books = [b for b in ledger.books if b.request_id == req.request_id]
        assert len(books) == 1, books
        book = books[0]
        assert book.own.response_code == "00", book  # the issuer approved both sends, too late
        assert [a.decision_id for a in book.advices] == [answers[0].decision_id], book
        assert book.advices[0].received >= 2, book  # advised again, with the repeat's answered_at
        assert book.final_minor == 0, book  # what the acquirer was told last: 91

    await assert_eventually(settled_at_zero, timeout_s=20.0, interval_s=0.3)


async def test_a_reused_request_id_is_refused_in_stand_in(
    gateway: Gateway, stub: pb_grpc.AuthorizationStub
) -> None:
    """Stand-in approved 1.00 under an id; the same id for 900,000.00 at a casino is ALREADY_EXISTS."""
    gateway.mode = Mode.FORCE_STANDIN
    rid = _rid()
    first = await stub.Authorize(auth_request(request_id=rid, amount_minor=100), timeout=2)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Authorize(auth_request(request_id=rid, amount_minor=90_000_000, mcc="7995"), timeout=2)
    again = await stub.Authorize(auth_request(request_id=rid, amount_minor=100), timeout=2)
    assert info.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "request_id" in (info.value.details() or "")
    assert (again.decision_id, again.approval_code) == (first.decision_id, first.approval_code)


async def _issuer_books(sims: dict[str, ManagedProcess], request_id: str) -> list[Any]:
    """Every simulator's books of `request_id` (each keeps its own ledger here)."""
    books = []
    for sim in sims.values():
        async with SimControl(sim.address) as ctl:
            books += [b for b in (await ctl.books()).books if b.request_id == request_id]
    return books


@pytest.mark.no_settlement
async def test_a_reused_id_of_a_stand_in_decision_is_refused_before_any_issuer_sees_it(
    gateway: Gateway, sims: dict[str, ManagedProcess], stub: pb_grpc.AuthorizationStub
) -> None:
    """Stand-in approved 1.00 under an id, not yet advised; the issuers answer again. The id for
    900,000.00 at a casino is refused ALREADY_EXISTS by the gateway, and no issuer ever sees it
    (before the advice an issuer would approve it as a new transaction); the same content again is
    the same request and goes to the issuer as usual."""
    gateway.mode = Mode.FORCE_STANDIN
    rid = _rid()
    first = await stub.Authorize(auth_request(request_id=rid, amount_minor=100), timeout=2)
    assert (first.source, first.response_code) == (pb.STAND_IN, "00")
    gateway.mode = Mode.AUTO
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Authorize(auth_request(request_id=rid, amount_minor=90_000_000, mcc="7995"), timeout=2)
    assert info.value.code() is grpc.StatusCode.ALREADY_EXISTS, info.value
    assert "not yet advised" in (info.value.details() or "")
    assert await _issuer_books(sims, rid) == []
    repeat = await stub.Authorize(auth_request(request_id=rid, amount_minor=100), timeout=2)
    assert repeat.source == pb.ISSUER
    assert gateway.standin is not None and gateway.standin.reuse.refused >= 1


@pytest.mark.no_reuse_check
async def test_a_reused_id_refused_after_reaching_the_issuer_is_released_there(
    gateway: Gateway, sims: dict[str, ManagedProcess], stub: pb_grpc.AuthorizationStub
) -> None:
    """Stand-in approved 1.00 under an id (not yet advised: the issuers refuse advices for now).
    Without the issuer path's reuse check (off here; skipped when it cannot read Redis), the same id
    for 2.00 at another MCC goes to the slow primary, which approves it after the client's
    deadline: stand-in then refuses it (ALREADY_EXISTS), and the issuer must not keep that approval.
    A declined advice of the reused content (94) brings its book to 0; the original's stays 1.00."""
    gateway.mode = Mode.FORCE_STANDIN
    rid = _rid()
    first = await stub.Authorize(auth_request(request_id=rid, amount_minor=100), timeout=2)
    assert (first.source, first.response_code) == (pb.STAND_IN, "00")
    for member in ("a1", "b1"):  # the original's advice must not reach an issuer before the reuse
        async with SimControl(sims[member].address) as ctl:
            await ctl.set_faults(latency_ms=250 if member == "a1" else 0, advise_reject_rate=1.0)
    gateway.mode = Mode.AUTO
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Authorize(auth_request(request_id=rid, amount_minor=200, mcc="5812"), timeout=0.15)
    assert info.value.code() is grpc.StatusCode.ALREADY_EXISTS
    await asyncio.sleep(0.5)  # the primary has booked the reuse (250 ms late)
    for member in ("a1", "b1"):
        async with SimControl(sims[member].address) as ctl:
            await ctl.set_faults()

    async def released() -> None:
        async with SimControl(sims["a1"].address) as ctl:
            ledger = await ctl.books()
        books = {b.amount_minor: b for b in ledger.books if b.request_id == rid}
        assert set(books) == {100, 200}, books
        assert books[200].own.response_code == "00", books[200]  # the issuer approved the reuse
        assert [a.response_code for a in books[200].advices] == ["94"], books[200]
        assert (books[200].final_minor, books[100].final_minor) == (0, 100), books

    await assert_eventually(released, timeout_s=20.0, interval_s=0.3)


async def test_a_reversal_of_a_stand_in_approval_is_applied(
    gateway: Gateway, stub: pb_grpc.AuthorizationStub
) -> None:
    """While every issuer is away, reversing a stand-in approval: APPLIED by stand-in."""
    gateway.mode = Mode.FORCE_STANDIN
    rid = _rid()
    approved = await stub.Authorize(auth_request(request_id=rid, amount_minor=4_000), timeout=2)
    answer = await stub.Reverse(_reversal(rid, final_minor=0), timeout=2)
    assert approved.response_code == "00"
    assert (answer.status, answer.response_code, answer.source) == (pb.APPLIED, "00", pb.STAND_IN)


async def test_a_reversal_nothing_answers_is_stored(
    gateway: Gateway, sims: dict[str, ManagedProcess], stub: pb_grpc.AuthorizationStub
) -> None:
    """Every issuer hung, a reversal of a request stand-in never saw: acknowledged, STORED."""
    for p in sims.values():
        p.signal(signal.SIGSTOP)
    answer = await stub.Reverse(_reversal(_rid(), final_minor=0), timeout=3)
    assert (answer.status, answer.response_code, answer.source) == (pb.STORED, "00", pb.STAND_IN)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"acquirer_id": ""}, "acquirer_id"),
        ({"acquirer_id": "ACQ1"}, "acquirer_id"),
        ({"reversal_id": ""}, "reversal_id"),
        ({"original_request_id": ""}, "original_request_id"),
        ({"final_amount_minor": -1}, "final_amount_minor"),
        ({"final_amount_minor": 5_000, "original_amount_minor": 4_000}, "final_amount_minor"),
        ({"reason": pb.REVERSAL_REASON_UNSPECIFIED}, "reason"),
        ({"currency": "XYZ"}, "currency"),
    ],
)
async def test_a_bad_reversal_names_its_field(
    stub: pb_grpc.AuthorizationStub, change: dict[str, Any], field: str
) -> None:
    """A reversal breaking a rule is INVALID_ARGUMENT naming the field."""
    req = _reversal(_rid(), final_minor=0)
    for name, value in change.items():
        setattr(req, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Reverse(req, timeout=2)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(f"{field}:")


def _reversal(original_request_id: str, *, final_minor: int) -> pb.ReverseRequest:
    return pb.ReverseRequest(
        acquirer_id="1001",
        reversal_id=f"rev-{original_request_id}",
        original_request_id=original_request_id,
        pan=PAN_VISA,
        final_amount_minor=final_minor,
        reason=pb.CARDHOLDER_CANCEL,
        currency="EUR",
    )


class _SlowEngine:
    """Stands for the stand-in engine: a decision that takes 50 ms and says when it has finished."""

    def __init__(self) -> None:
        self.finished: list[str] = []
        self.balance_settings = BalanceSettings()  # the fallback sizes its balance queue from it

    async def decide(
        self, request: Any, reason: Any, trace_context: str = "", *, maybe_reached_issuer: bool = False
    ) -> Any:
        await asyncio.sleep(0.05)
        self.finished.append(request.request_id)
        raise StandInError("recorded; the answer itself does not matter here")

    async def close(self) -> None:
        return None


async def test_a_decision_is_never_cancelled_half_way() -> None:
    """The caller of a stand-in decision is cancelled (a client gone): the decision still runs to its end."""
    engine = _SlowEngine()
    fallback = StandInFallback(engine)  # type: ignore[arg-type]
    caller = asyncio.create_task(fallback.answer(auth_request(request_id="gone"), Reason.FORCED, 0.0))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert engine.finished == []
    await fallback.close()  # waits for decisions whose callers went away
    assert engine.finished == ["gone"]
