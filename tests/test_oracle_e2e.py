"""The load generator, a real issuer simulator and the oracle, end to end, around a minimal gateway.

The gateway here is a pass-through written for the test (a real gRPC server
on loopback): Authorize and Reverse forwarded to one issuer host, the
issuer's call left running when the acquirer gives up (so late approvals
happen, as with a real gateway), no stand-in. With it forwarding reversals,
every behaviour of the acquirer (timeouts, cancels, repeats, reused ids,
reversals after and before their original) must settle to the six figures
at 0; without Reverse (UNIMPLEMENTED, today's gateway), the acquirer keeps
trying and the oracle sees the holds that stay.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from test_oracle_support import StartSim, sim_fleet
from test_standin_support import client, flush_standin_keys

from authgw.tasks import cancel_and_wait
from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.acquirer import Acquirer, AcquirerBehaviour
from chaos.load import CardMix
from chaos.samples import Outcome, Sample
from chaos.sim_control import SimControl
from chaos.verify import MoneyCheck, compare, journal_backlog
from standin.keys import dead_key, stream_key
from standin.settlement.keys import WORKERS_KEY

pytestmark = pytest.mark.timeout(60)

_Context = grpc.aio.ServicerContext[object, object]


class PassThrough(pb_grpc.AuthorizationServicer):
    """A minimal gateway: one issuer host, no retry, no stand-in; Reverse optional."""

    def __init__(self, issuer: str, *, reverse: bool) -> None:
        self._channel = grpc.aio.insecure_channel(issuer)
        self._stub = pb_grpc.IssuerHostStub(self._channel)
        self._reverse = reverse
        self.late: set[asyncio.Future[pb.AuthorizeResponse]] = set()

    async def Authorize(self, request: pb.AuthorizeRequest, context: _Context) -> pb.AuthorizeResponse:  # type: ignore[override]
        # The issuer's call outlives an acquirer that gave up: its answer may approve late.
        call = asyncio.ensure_future(self._stub.Authorize(request, timeout=5.0))
        self.late.add(call)
        call.add_done_callback(self._settled)
        try:
            response: pb.AuthorizeResponse = await asyncio.shield(call)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        return response

    def _settled(self, call: asyncio.Future[pb.AuthorizeResponse]) -> None:
        self.late.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved: a refusal nobody waits for any more is no error here

    async def Reverse(self, request: pb.ReverseRequest, context: _Context) -> pb.ReverseResponse:  # type: ignore[override]
        if not self._reverse:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        try:
            response: pb.ReverseResponse = await self._stub.Reverse(request, timeout=2.0)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        return response

    async def close(self) -> None:
        for call in list(self.late):
            await cancel_and_wait(call)  # type: ignore[arg-type]
        await self._channel.close()


@pytest.fixture
async def start_sim(tmp_path: Path) -> AsyncIterator[StartSim]:
    """Start simulators with extra CLI arguments; all are stopped after the test."""
    async with sim_fleet(tmp_path) as start:
        yield start


async def _gateway(issuer: str, *, reverse: bool) -> tuple[grpc.aio.Server, PassThrough, str]:
    server = grpc.aio.server()
    servicer = PassThrough(issuer, reverse=reverse)
    pb_grpc.add_AuthorizationServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, servicer, f"127.0.0.1:{port}"


async def _run(
    start_sim: StartSim, behaviour: AcquirerBehaviour, *, reverse: bool, settle_s: float
) -> tuple[list[Sample], MoneyCheck]:
    """200 requests through the pass-through to a simulator answering in 40 ms; then settle and compare."""
    sim = await start_sim("--latency-ms", "40")
    server, servicer, address = await _gateway(sim.proc.address, reverse=reverse)
    try:
        async with Acquirer([address], behaviour) as acquirer:
            samples = await acquirer.run(100.0, 2.0, CardMix(cards=50, acquirer_ids=("1001", "2002")).request)
            for _ in range(int(settle_s * 10)):
                if acquirer.pending_reversals == 0 and not servicer.late:
                    break
                await asyncio.sleep(0.1)
        async with SimControl(sim.proc.address) as control:
            books = await control.books()
    finally:
        await server.stop(0)
        await servicer.close()
    return samples, compare(samples, books.books, books.unexplained)


async def test_every_acquirer_behaviour_settles_to_zero_through_a_gateway_that_forwards(
    start_sim: StartSim,
) -> None:
    """Timeouts, cancels, repeats, reused ids, reversals after and before: all 0, each behaviour seen."""
    behaviour = AcquirerBehaviour(
        repeat_share=0.2, reuse_share=0.1, reverse_share=0.4, reverse_first_share=0.1, cancel_share=0.15,
        deadline_range_s=(0.02, 0.3),
    )  # fmt: skip
    samples, check = await _run(start_sim, behaviour, reverse=True, settle_s=10.0)
    assert check.figures() == dict.fromkeys(check.figures(), 0), check.examples
    assert check.unexplained_postings == 0
    reversals = [r for s in samples for r in s.reversals]
    assert check.reversals_acked == check.reversals_sent == len(reversals) > 0
    assert check.reversals_applied == check.reversals_sent
    seen = Counter(s.last_outcome for s in samples)
    assert seen[Outcome.NO_ANSWER] > 0 and seen[Outcome.REFUSED] > 0 and seen[Outcome.ANSWERED] > 0
    assert any(s.reused and s.refusals == ["ALREADY_EXISTS"] for s in samples)
    assert any(s.sends > 1 for s in samples), "no repeat"
    assert any(s.cancelled for s in samples), "no cancel"
    assert any(r.before_original and r.status == "STORED" for r in reversals)
    assert any(r.final_amount_minor > 0 and r.status == "APPLIED" for r in reversals), "no partial reversal"
    assert any(r.timeout and r.acked for r in reversals)
    assert {s.acquirer_id for s in samples} == {"1001", "2002"}


async def test_without_reverse_on_the_gateway_the_acquirer_keeps_trying_and_holds_stay(
    start_sim: StartSim,
) -> None:
    """Reverse UNIMPLEMENTED: no reversal acknowledged (each retried), late approvals stay held, reported."""
    behaviour = AcquirerBehaviour(reverse_share=0.5, deadline_range_s=(0.02, 0.06))
    samples, check = await _run(start_sim, behaviour, reverse=False, settle_s=1.5)
    reversals = [r for s in samples for r in s.reversals]
    assert reversals
    assert check.reversals_acked == 0
    assert all(r.last_error == "UNIMPLEMENTED" for r in reversals)
    assert max(r.attempts for r in reversals) > 1
    assert check.holds_not_released > 0  # approved late by the issuer, timed out for the acquirer
    assert check.missing == check.double_posted == 0


async def test_journal_backlog_counts_what_the_gateways_still_have_to_settle(redis_port: int) -> None:
    """Journal entries and dead letters of every partition, and recent workers' local backlogs, on a
    real Redis: what keeps a chaos run's settle phase waiting."""
    redis = client(redis_port)
    try:
        assert await journal_backlog(redis) == 0
        await redis.xadd(stream_key(0), {"decision_id": "d-1"})
        await redis.xadd(stream_key(3), {"decision_id": "d-2"})
        await redis.xadd(dead_key(3), {"decision_id": "d-3"})
        now_ms = int(time.time() * 1000)
        beats = {
            "w1": {"updated_ms": now_ms, "local_backlog": 4},
            "gone": {"updated_ms": 0, "local_backlog": 9},
        }
        await redis.hset(WORKERS_KEY, mapping={w: json.dumps(b) for w, b in beats.items()})
        assert await journal_backlog(redis) == 3 + 4
    finally:
        await flush_standin_keys(redis)
        await redis.aclose()
