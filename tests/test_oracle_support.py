"""Shared builders for the issuer simulator's tests (no tests and no fixtures here).

Simulators are real `python -m chaos issuer-sim` processes on free loopback
ports; the shared-ledger tests point them at the session's real Redis. Cards
are fresh random PANs (their opening balance comes from `card_profile`) or
the documented special PANs, and ids are fresh, so no test depends on
another's books.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from authgw.v1 import simulator_pb2
from chaos.card_profiles import CardStatus, card_profile, luhn_valid
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.request_key import content_digest
from chaos.sim_control import LedgerBooks, SimControl

ACQUIRER = "1001"


def fresh_pan() -> tuple[str, int]:
    """A random Luhn-valid PAN of an active card, and its opening balance."""
    while True:
        body = "9" + "".join(random.choices("0123456789", k=14))
        pan = next(body + d for d in "0123456789" if luhn_valid(body + d))
        profile = card_profile(pan)
        if profile.status is CardStatus.ACTIVE:
            return pan, profile.balance_minor


def auth_request(
    pan: str, amount_minor: int, *, request_id: str = "", acquirer_id: str = ACQUIRER, **fields: object
) -> pb.AuthorizeRequest:
    """A request with every content field set (fresh request_id unless given)."""
    content: dict[str, object] = {
        "currency": "EUR", "mcc": "5411", "merchant_id": "M0001", "terminal_id": "T001",
        "channel": pb.POS_CHIP,
    }  # fmt: skip
    content.update(fields)
    return pb.AuthorizeRequest(
        acquirer_id=acquirer_id,
        request_id=request_id or uuid.uuid4().hex,
        pan=pan,
        amount_minor=amount_minor,
        **content,  # type: ignore[arg-type]
    )


def timestamp_us(micros: int) -> Timestamp:
    return Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def standin_advice(
    request: pb.AuthorizeRequest,
    *,
    approved: bool,
    answered_at_us: int = 0,
    decision_id: str = "",
    origin: int = pb.STAND_IN_DECISION,
) -> pb.StandInAdvice:
    """An advice of `request`'s outcome (fresh decision_id unless given)."""
    advice = pb.StandInAdvice(
        decision_id=decision_id or f"adv-{uuid.uuid4().hex}",
        request=request,
        decision=pb.APPROVED if approved else pb.DECLINED,
        response_code="00" if approved else "05",
        origin=origin,  # type: ignore[arg-type]
    )
    if answered_at_us:
        advice.answered_at.CopyFrom(timestamp_us(answered_at_us))
    return advice


def reversal(
    request: pb.AuthorizeRequest, final_amount_minor: int, *, reversal_id: str = ""
) -> pb.ReverseRequest:
    """The acquirer's reversal of `request` to final_amount_minor (fresh reversal_id unless given)."""
    return pb.ReverseRequest(
        acquirer_id=request.acquirer_id,
        reversal_id=reversal_id or f"rev-{uuid.uuid4().hex}",
        original_request_id=request.request_id,
        pan=request.pan,
        final_amount_minor=final_amount_minor,
        reason=pb.CARDHOLDER_CANCEL,
        currency=request.currency,
        original_amount_minor=request.amount_minor,
    )


@dataclass
class Sim:
    """One simulator process and clients for its services."""

    proc: ManagedProcess
    channel: grpc.aio.Channel
    control: SimControl

    @property
    def _stub(self) -> pb_grpc.IssuerHostStub:
        return pb_grpc.IssuerHostStub(self.channel)

    async def authorize(
        self, pan: str, amount_minor: int, request_id: str | None = None, timeout_s: float = 2.0
    ) -> pb.AuthorizeResponse:
        request = pb.AuthorizeRequest(
            request_id=request_id or uuid.uuid4().hex, pan=pan, amount_minor=amount_minor, currency="EUR"
        )
        return await self.send(request, timeout_s)

    async def send(self, request: pb.AuthorizeRequest, timeout_s: float = 2.0) -> pb.AuthorizeResponse:
        response: pb.AuthorizeResponse = await self._stub.Authorize(request, timeout=timeout_s)
        return response

    async def advise(
        self, decision_id: str, pan: str, amount_minor: int, *, approved: bool = True, timeout_s: float = 2.0
    ) -> pb.AdviceAck:
        advice = pb.StandInAdvice(
            decision_id=decision_id,
            request=pb.AuthorizeRequest(request_id=uuid.uuid4().hex, pan=pan, amount_minor=amount_minor),
            decision=pb.APPROVED if approved else pb.DECLINED,
            response_code="00" if approved else "05",
        )
        return await self.send_advice(advice, timeout_s)

    async def send_advice(self, advice: pb.StandInAdvice, timeout_s: float = 2.0) -> pb.AdviceAck:
        ack: pb.AdviceAck = await self._stub.Advise(advice, timeout=timeout_s)
        return ack

    async def reverse(self, request: pb.ReverseRequest, timeout_s: float = 2.0) -> pb.ReverseResponse:
        response: pb.ReverseResponse = await self._stub.Reverse(request, timeout=timeout_s)
        return response

    async def books_of(self, request: pb.AuthorizeRequest) -> list[simulator_pb2.RequestBook]:
        """The ledger's books for request's (acquirer_id, request_id), every content."""
        every = await self.control.books()
        return [
            b
            for b in every.books
            if (b.acquirer_id, b.request_id) == (request.acquirer_id, request.request_id)
        ]

    async def book(self, request: pb.AuthorizeRequest) -> simulator_pb2.RequestBook:
        """The ledger's book of exactly this request (its content)."""
        digest = content_digest(request)
        [found] = [b for b in await self.books_of(request) if b.digest == digest]
        return found

    async def all_books(self) -> LedgerBooks:
        return await self.control.books()

    async def health(self, service: str = "", timeout_s: float = 2.0) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        return int(response.status)

    async def close(self) -> None:
        await self.control.close()
        await self.channel.close()


StartSim = Callable[..., Awaitable[Sim]]


@asynccontextmanager
async def sim_fleet(workdir: Path) -> AsyncIterator[StartSim]:
    """Start simulators with extra CLI arguments; all are stopped on exit."""
    sims: list[Sim] = []

    async def start(*extra: str, pool: str = "p1", member: str = "m1") -> Sim:
        port = free_port()
        args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", pool, "--member", member, *extra]
        proc = start_authgw(workdir, f"sim-{pool}-{member}", args, port)
        sim = Sim(proc, grpc.aio.insecure_channel(proc.address), SimControl(proc.address))
        sims.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in sims:
            await sim.close()
            sim.proc.stop()


def ledger_args(ledger: str, redis_server: ManagedProcess) -> list[str]:
    """issuer-sim arguments for a "memory" ledger (none) or the session Redis as a shared one."""
    return ["--ledger", f"redis://127.0.0.1:{redis_server.port}/9"] if ledger == "redis" else []


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value
