"""Without `[standin]`: the gateway's own 91 after an attempt that reached an issuer is reversed there.

A real issuer-sim process (primary) answers after the attempt timeout, the secondary is
down: the gateway answers 91, the issuer approves late, and the gateway's background
reversal (gateway.late_reversal) brings the issuer's book for that request back to 0.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from authgw.v1 import simulator_pb2
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.sim_control import SimControl
from gateway.app import Gateway
from gateway.late_reversal import LateReversals
from gateway.router import Router
from tests.gateway_fixtures import auth_request, gateway_config
from tests.helpers import assert_eventually

ATTEMPT_TIMEOUT_MS = 300
LATE_MS = 900  # the primary's answers arrive this late: after the attempt timeout, inside the late window


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    workdir = tmp_path_factory.mktemp("late-reversal")
    port = free_port()
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", "a1"]
    proc = start_authgw(workdir, "a1", args, port)
    yield proc
    proc.stop()


@pytest.fixture
async def gateway(primary: ManagedProcess) -> AsyncIterator[Gateway]:
    """A gateway without [standin]: the primary, and a secondary nothing listens on."""
    cfg = gateway_config(
        [("primary", [primary.address]), ("secondary", [f"127.0.0.1:{free_port()}"])],
        extra={"routing": {"attempt_timeout": f"{ATTEMPT_TIMEOUT_MS}ms", "deadline": "2s"}},
    )
    assert cfg.standin is None
    gw = Gateway(cfg)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()


async def _book(primary: ManagedProcess, request_id: str) -> simulator_pb2.RequestBook:
    async with SimControl(primary.address) as ctl:
        ledger = await ctl.books()
    books = [b for b in ledger.books if b.request_id == request_id]
    assert len(books) == 1, books
    return books[0]


async def test_a_late_approval_after_the_gateways_91_is_reversed(
    gateway: Gateway, primary: ManagedProcess
) -> None:
    async with SimControl(primary.address) as ctl:
        await ctl.set_faults(latency_ms=LATE_MS)
    request_id = f"late-{time.monotonic_ns()}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        answer = await pb_grpc.AuthorizationStub(channel).Authorize(auth_request(request_id=request_id))
    assert (answer.decision, answer.response_code, answer.source) == (pb.DECLINED, "91", pb.STAND_IN)

    async def reversed_at_the_issuer() -> simulator_pb2.RequestBook:
        book = await _book(primary, request_id)
        assert book.own.response_code == "00", book  # the issuer did approve, too late for the gateway
        assert book.final_minor == 0, book  # ... and holds nothing: the acquirer was told 91
        return book

    try:
        book = await assert_eventually(reversed_at_the_issuer, timeout_s=15.0, interval_s=0.3)
    finally:
        async with SimControl(primary.address) as ctl:
            await ctl.set_faults()  # healthy again for other tests
    assert [r.reversal_id for r in book.reversals] == [f"gw-91-{request_id}"]


async def test_reversals_past_the_bound_are_dropped_and_unanswered_ones_given_up() -> None:
    """Nothing listens on the only pool: the first reversal is repeated until give_up_s, the second,
    past max_pending, is dropped at once."""
    router = Router(gateway_config([("primary", [f"127.0.0.1:{free_port()}"])]))
    late = LateReversals(router, attempt_deadline_s=0.5, give_up_s=1.5, max_pending=1)
    try:
        late.reverse(auth_request(request_id="r-1"))
        late.reverse(auth_request(request_id="r-2"))
        assert (late.pending, late.outcomes["dropped"]) == (1, 1)

        def given_up() -> None:
            assert (late.pending, late.outcomes["given_up"]) == (0, 1)

        await assert_eventually(given_up, timeout_s=10.0)
    finally:
        await late.close()
        await router.close()
