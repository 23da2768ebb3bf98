"""A real gateway past its admission limit: the excess refused at once, the admitted answered, books agree."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.sim_control import SimControl
from gateway.app import Gateway
from tests.gateway_fixtures import auth_request, gateway_config
from tests.helpers import PAN_VISA, assert_eventually

LIMIT = 4
FLOOD = 30


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    port = free_port()
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", "a1"]
    proc = start_authgw(tmp_path_factory.mktemp("admission"), "a1", args, port)
    yield proc
    proc.stop()


@pytest.fixture
async def gateway(sim: ManagedProcess) -> AsyncIterator[Gateway]:
    """A gateway whose limit stays at LIMIT (min = max), in front of one simulator."""
    fixed = {
        "enabled": True,
        "initial_limit": LIMIT,
        "min_limit": LIMIT,
        "max_limit": LIMIT,
        "hard_limit": 1000,
    }
    cfg = gateway_config(
        [("primary", [sim.address])], extra={"admission": fixed, "routing": {"attempt_timeout": "1500ms"}}
    )
    gw = Gateway(cfg)
    await gw.start()
    yield gw
    await gw.close()
    async with SimControl(sim.address) as ctl:
        await ctl.clear_faults()


def _reversal(original_request_id: str) -> pb.ReverseRequest:
    return pb.ReverseRequest(
        acquirer_id="1001",
        reversal_id=f"rev-{original_request_id}",
        original_request_id=original_request_id,
        pan=PAN_VISA,
        final_amount_minor=0,
        reason=pb.CARDHOLDER_CANCEL,
        currency="EUR",
    )


async def test_a_flood_past_the_limit_is_refused_at_once_and_the_admitted_are_answered(
    gateway: Gateway, sim: ManagedProcess, tmp_path: Path
) -> None:
    """Beyond LIMIT in flight: RESOURCE_EXHAUSTED before any admitted answer; reversals and health served."""
    ids = [f"adm-{tmp_path.name}-{i}" for i in range(FLOOD)]
    original = f"adm-{tmp_path.name}-orig"
    order = itertools.count()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.AuthorizationStub(channel)
        assert (await stub.Authorize(auth_request(request_id=original), timeout=5)).decision == pb.APPROVED
        async with SimControl(sim.address) as ctl:
            await ctl.set_faults(latency_ms=600)  # admitted requests stay in flight while the flood lands

        async def authorize(rid: str) -> tuple[int, pb.AuthorizeResponse | grpc.StatusCode]:
            try:
                answer = await stub.Authorize(auth_request(request_id=rid), timeout=5)
            except grpc.aio.AioRpcError as exc:
                return next(order), exc.code()
            return next(order), answer

        def limit_full() -> None:
            assert gateway.admission is not None and gateway.admission.in_flight == LIMIT

        flood = [asyncio.create_task(authorize(rid)) for rid in ids]
        await assert_eventually(limit_full)
        reversal = await stub.Reverse(_reversal(original), timeout=5)  # while the limit is full
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        results = dict(zip(ids, await asyncio.gather(*flood), strict=True))

    refused = {rid: seq for rid, (seq, r) in results.items() if r == grpc.StatusCode.RESOURCE_EXHAUSTED}
    answered = {rid: (seq, r) for rid, (seq, r) in results.items() if isinstance(r, pb.AuthorizeResponse)}
    assert len(answered) == LIMIT and len(refused) == FLOOD - LIMIT, results
    assert max(refused.values()) < min(seq for seq, _ in answered.values())  # refused before any answer
    assert all(r.decision == pb.APPROVED and r.source == pb.ISSUER for _, r in answered.values())
    assert gateway.admission is not None and gateway.admission.refused == FLOOD - LIMIT
    assert reversal.source == pb.ISSUER
    assert health.status == health_pb2.HealthCheckResponse.SERVING

    async with SimControl(sim.address) as ctl:
        books = {b.request_id: b for b in (await ctl.books()).books}
    for rid in answered:  # each admitted approval is held once by the issuer
        assert books[rid].own.arrived and books[rid].final_minor == 1234, rid
    for rid in refused:  # a refused request never reached the issuer: nothing held, nothing to advise
        assert rid not in books or not books[rid].own.arrived, rid
