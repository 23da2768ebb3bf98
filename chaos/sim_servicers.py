"""The issuer simulator's gRPC servicers: what one host answers, and how it is steered.

- `IssuerHostServicer` (authgw.v1.IssuerHost: Authorize, Advise, Reverse)
  books every call in the host's ledger by the rules of `chaos.book`, behind
  its fault gate, and counts what it answered. A request is (acquirer_id,
  request_id) and its content (`chaos.request_key`): Authorize with known ids
  and other content is refused ALREADY_EXISTS.
- `ControlServicer` (authgw.v1.IssuerSimControl) replaces the faults, reports
  the counters and the ledger's advices, and streams the ledger's books; no
  fault ever touches it.
- `HangingHealth` (grpc.health.v1.Health) hangs with the host.

All three share one `HostState`; `chaos.issuer_sim.IssuerSim` puts them on
one server.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Never

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2

from authgw.card_expiry import card_expired, expiry_problem
from authgw.v1 import authorization_pb2 as apb
from authgw.v1 import authorization_pb2_grpc, simulator_pb2, simulator_pb2_grpc
from chaos.book import ContentConflict
from chaos.card_profiles import luhn_valid
from chaos.ledger_protocol import AdviceEntry, HoldAttempt, Ledger, LedgerUnavailable, ReversalEntry
from chaos.request_key import content_digest
from chaos.sim_books import REVERSAL_STATUS, PostingTally, book_messages
from chaos.sim_faults import FaultGate, faults_problem

__all__ = ["ControlServicer", "HangingHealth", "HostState", "IssuerHostServicer", "SimCounters"]

log = logging.getLogger("authgw.issuer_sim")

_AnyContext = grpc.aio.ServicerContext[Any, Any]
_AuthorizeContext = grpc.aio.ServicerContext[apb.AuthorizeRequest, apb.AuthorizeResponse]
_AdviseContext = grpc.aio.ServicerContext[apb.StandInAdvice, apb.AdviceAck]
_ReverseContext = grpc.aio.ServicerContext[apb.ReverseRequest, apb.ReverseResponse]

_BOOKS_PAGE = 1000  # requests per BookPage by default: ~100-300 kB, far under gRPC's 4 MiB


@dataclass
class SimCounters:
    """Per-host counters reported by IssuerSimControl/Report."""

    authorize_calls: int = 0  # every Authorize received, faulted or not
    approvals: int = 0  # first answers that approved
    declines: int = 0  # first answers that declined, decline-storm answers included
    repeated_request_ids: int = 0  # answered from the ledger's memory
    advise_calls: int = 0  # every Advise received, faulted or not
    duplicate_advices: int = 0
    reverse_calls: int = 0  # every Reverse received, faulted or not
    duplicate_reversals: int = 0
    refused_other_content: int = 0  # Authorize refused ALREADY_EXISTS
    approved_request_ids: list[str] = field(default_factory=list)


def _advice_problem(advice: apb.StandInAdvice) -> str | None:
    if not advice.decision_id:
        return "empty decision_id"
    if not advice.HasField("request"):
        return "missing request"
    if not luhn_valid(advice.request.pan):
        return "PAN is not 12-19 digits passing the Luhn check"
    if advice.request.amount_minor <= 0:
        return "amount_minor must be > 0"
    if advice.decision not in (apb.APPROVED, apb.DECLINED):
        return "decision must be APPROVED or DECLINED"
    return None


def _reversal_problem(reversal: apb.ReverseRequest) -> str | None:
    if not reversal.reversal_id:
        return "empty reversal_id"
    if not reversal.original_request_id:
        return "empty original_request_id"
    if reversal.final_amount_minor < 0:
        return "final_amount_minor must be >= 0"
    return None


def _expired(request: apb.AuthorizeRequest) -> bool:
    """The card's expiry (sent, well-formed) is past at the transmission time (else now): as stand-in."""
    if not request.card_expiry or expiry_problem(request.card_expiry) is not None:
        return False
    sent = request.transmitted_at.ToDatetime(tzinfo=UTC) if request.HasField("transmitted_at") else None
    return card_expired(request.card_expiry, sent or datetime.now(UTC))


def _micros(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


@dataclass
class HostState:
    """What both servicers of one host share."""

    pool: str
    member: str
    ledger: Ledger
    gate: FaultGate
    counters: SimCounters
    ledger_down: bool = False

    async def ledger_failed(self, context: _AnyContext, exc: LedgerUnavailable) -> Never:
        if not self.ledger_down:
            self.ledger_down = True
            log.warning("ledger unavailable: %s", exc)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "issuer-sim: ledger unavailable")

    def ledger_ok(self) -> None:
        if self.ledger_down:
            self.ledger_down = False
            log.info("ledger available again")


class IssuerHostServicer(authorization_pb2_grpc.IssuerHostServicer):
    """authgw.v1.IssuerHost backed by a ledger, behind the fault gate."""

    def __init__(self, host: HostState) -> None:
        self._host = host
        self._id_prefix = f"iss-{secrets.token_hex(6)}-"  # unique across hosts and restarts
        self._next_id = 0

    def _decision_id(self) -> str:
        self._next_id += 1
        return f"{self._id_prefix}{self._next_id:x}"

    def _declined(self, request: apb.AuthorizeRequest, code: str) -> apb.AuthorizeResponse:
        self._host.counters.declines += 1
        return apb.AuthorizeResponse(
            request_id=request.request_id, decision=apb.DECLINED, response_code=code, source=apb.ISSUER,
            pool=self._host.pool, member=self._host.member, decision_id=self._decision_id(),
        )  # fmt: skip

    async def Authorize(
        self, request: apb.AuthorizeRequest, context: _AuthorizeContext
    ) -> apb.AuthorizeResponse:
        host, counters = self._host, self._host.counters
        counters.authorize_calls += 1
        await host.gate.enter(context)
        if host.gate.current.decline_code:
            return self._declined(request, host.gate.current.decline_code)
        if not request.request_id or request.amount_minor <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request_id and amount_minor > 0 required")
        if not luhn_valid(request.pan):
            return self._declined(request, "14")  # invalid card number
        if _expired(request):
            return self._declined(request, "54")  # expired card: nothing held, like any decline
        attempt = HoldAttempt(
            request.request_id, request.pan, request.amount_minor, self._decision_id(),
            host.gate.approval_code(), host.pool, host.member, request.acquirer_id, content_digest(request),
            _micros(request.forwarded_at) if request.HasField("forwarded_at") else 0,
        )  # fmt: skip
        try:
            answer = await host.ledger.authorize(attempt)
        except LedgerUnavailable as exc:
            await host.ledger_failed(context, exc)
        except ContentConflict:
            counters.refused_other_content += 1
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS, "request_id already used by this acquirer with other content"
            )
        host.ledger_ok()
        approved = answer.response_code == "00"
        if answer.repeated:
            counters.repeated_request_ids += 1
        elif approved:
            counters.approvals += 1
            counters.approved_request_ids.append(request.request_id)
        else:
            counters.declines += 1
        response = apb.AuthorizeResponse(
            request_id=request.request_id, decision=apb.APPROVED if approved else apb.DECLINED,
            response_code=answer.response_code, approval_code=answer.approval_code, source=apb.ISSUER,
            pool=answer.pool, member=answer.member, decision_id=answer.decision_id,
        )  # fmt: skip
        if host.gate.current.send_balance and answer.available_minor is not None:
            response.available_balance_minor = max(answer.available_minor, 0)
        return response

    async def Advise(self, request: apb.StandInAdvice, context: _AdviseContext) -> apb.AdviceAck:
        host = self._host
        host.counters.advise_calls += 1
        await host.gate.enter(context)
        if host.gate.rejects(host.gate.current.advise_reject_rate):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "issuer-sim: advice rejected (injected)")
        problem = _advice_problem(request)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"poison advice: {problem}")
        original = request.request
        entry = AdviceEntry(
            request.decision_id, original.pan, request.decision == apb.APPROVED, original.amount_minor,
            request.response_code, original.request_id, original.acquirer_id, content_digest(original),
            _micros(request.answered_at) if request.HasField("answered_at") else 0, int(request.origin),
        )  # fmt: skip
        try:
            duplicate = await host.ledger.advise(entry)
        except LedgerUnavailable as exc:
            await host.ledger_failed(context, exc)
        host.ledger_ok()
        if duplicate:
            host.counters.duplicate_advices += 1
        return apb.AdviceAck(decision_id=request.decision_id, duplicate=duplicate)

    async def Reverse(self, request: apb.ReverseRequest, context: _ReverseContext) -> apb.ReverseResponse:
        host = self._host
        host.counters.reverse_calls += 1
        await host.gate.enter(context)
        if host.gate.rejects(host.gate.current.advise_reject_rate):
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "issuer-sim: reversal rejected (injected)"
            )
        problem = _reversal_problem(request)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid reversal: {problem}")
        entry = ReversalEntry(
            request.acquirer_id, request.reversal_id, request.original_request_id, request.final_amount_minor,
            request.original_amount_minor,
        )  # fmt: skip
        try:
            outcome = await host.ledger.reverse(entry)
        except LedgerUnavailable as exc:
            await host.ledger_failed(context, exc)
        host.ledger_ok()
        if outcome.duplicate:
            host.counters.duplicate_reversals += 1
        return apb.ReverseResponse(
            reversal_id=request.reversal_id, status=REVERSAL_STATUS[outcome.status],
            response_code="00", source=apb.ISSUER,
        )  # fmt: skip


class ControlServicer(simulator_pb2_grpc.IssuerSimControlServicer):
    """authgw.v1.IssuerSimControl: never subject to faults."""

    def __init__(self, host: HostState) -> None:
        self._host = host

    async def SetFaults(
        self, request: simulator_pb2.SetFaultsRequest, context: _AnyContext
    ) -> simulator_pb2.Faults:
        problem = faults_problem(request.faults)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"faults: {problem}")
        self._host.gate.replace(request.faults)
        return self._host.gate.current

    async def Report(
        self, request: simulator_pb2.ReportRequest, context: _AnyContext
    ) -> simulator_pb2.SimReport:
        host, c = self._host, self._host.counters
        try:
            advices = await host.ledger.advices()
        except LedgerUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"issuer-sim: {exc}")
        return simulator_pb2.SimReport(
            pool=host.pool, member=host.member, authorize_calls=c.authorize_calls, approvals=c.approvals,
            declines=c.declines, repeated_request_ids=c.repeated_request_ids, advise_calls=c.advise_calls,
            duplicate_advices=c.duplicate_advices, faults=host.gate.current,
            approved_request_ids=c.approved_request_ids, reverse_calls=c.reverse_calls,
            refused_other_content=c.refused_other_content, duplicate_reversals=c.duplicate_reversals,
            advices=[
                simulator_pb2.AdviceRecord(
                    decision_id=a.decision_id, received=a.received, applied=a.applied,
                    amount_minor=a.amount_minor, response_code=a.response_code, request_id=a.request_id,
                )
                for a in advices
            ],
        )  # fmt: skip

    async def Books(
        self, request: simulator_pb2.BooksRequest, context: _AnyContext
    ) -> AsyncIterator[simulator_pb2.BookPage]:
        # One snapshot, then pages of it: paging the live ledger while settlement posts would show
        # each posting made between a record's page and the debits as an unexplained card.
        try:
            snapshot = await self._host.ledger.snapshot()
        except LedgerUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"issuer-sim: {exc}")
        tally, size = PostingTally(), request.page_size or _BOOKS_PAGE
        for start in range(0, len(snapshot.records), size):
            records = snapshot.records[start : start + size]
            tally.add(records)
            yield simulator_pb2.BookPage(books=[b for r in records for b in book_messages(r)])
        yield simulator_pb2.BookPage(last=True, unexplained=tally.unexplained(snapshot.debits))


class HangingHealth(health.aio.HealthServicer):  # type: ignore[misc]  # grpc_health ships no types
    """grpc.health.v1.Health whose Check hangs with the host, as a hung process's would."""

    def __init__(self, gate: FaultGate) -> None:
        super().__init__()
        self._gate = gate

    async def Check(self, request: health_pb2.HealthCheckRequest, context: _AnyContext) -> Any:
        await self._gate.wait_released()
        return await super().Check(request, context)
