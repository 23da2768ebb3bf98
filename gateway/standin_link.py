"""The gateway's edge to stand-in: protobuf in, stand-in domain types across, protobuf out.

`standin` knows nothing of gRPC; this module converts at the boundary and
builds the engine from the gateway config's `[standin]` section (loaded and typed
by gateway.config: the stand-in file, its Redis URL override and this instance's
local journal):

    [standin]
    config = "standin.toml"        # the policy, Redis, journal and keys (relative to this file)
    redis_url = "redis://..."      # optional override of the file's [redis] url
    sqlite_path = "gw-1.sqlite3"   # optional; default <instance>.sqlite3 beside the file's
    reuse_check = true             # the issuer path asks stand-in about reused ids while decisions
                                   # wait for their advice (gateway/reuse_check.py)

With a tracer, each decision runs in an `authgw.standin.decide` span (rule,
response code, risk tier, reason, journal), and the authorization's traceparent
is handed to the engine, which stores it in the journal entry.

A decision is never cancelled half way: the engine's own Redis deadlines keep
it inside the stand-in reserve, and cancelling after the journal write could
leave an approval on record that the cardholder never received.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from opentelemetry.trace import Status, StatusCode, Tracer

from authgw.v1 import authorization_pb2 as pb
from gateway.balance_feed import BalanceFeed
from gateway.config import GatewayConfig
from gateway.errors import RequestRefused
from gateway.fallback import decline_91, proto_reason
from gateway.reuse_check import ReuseCheck
from gateway.tracing import STANDIN_SPAN
from standin import StandIn, StandInDecision, StandInError, StandInRequest
from standin.errors import ReusedRequestIdError
from standin.types import (
    AcquirerAdviceKind,
    Channel,
    CheckResult,
    JournalKind,
    Reason,
    ReversalOutcome,
    ReversalReason,
    StandInReversal,
)

__all__ = ["STANDIN_SPAN", "StandInFallback", "build_standin", "to_response", "to_standin_request"]

log = logging.getLogger("authgw.standin")

T = TypeVar("T")

_UNKNOWN_COUNTRY = "ZZ"  # ISO 3166 user-assigned "unknown": treated as foreign by the policy
_CHECK_RESULT = {
    pb.NOT_CHECKED: CheckResult.ABSENT,
    pb.PASSED: CheckResult.VERIFIED,
    pb.FAILED: CheckResult.FAILED,
}


def to_standin_request(req: pb.AuthorizeRequest) -> StandInRequest:
    """Convert a validated AuthorizeRequest to stand-in's own type."""
    sent = req.transmitted_at.ToDatetime(tzinfo=UTC) if req.HasField("transmitted_at") else datetime.now(UTC)
    return StandInRequest(
        request_id=req.request_id,
        acquirer_id=req.acquirer_id,
        pan=req.pan,
        amount_minor=req.amount_minor,
        currency=req.currency,
        mcc=req.mcc,
        channel=Channel(pb.Channel.Name(req.channel)),
        merchant_id=req.merchant_id,
        terminal_id=req.terminal_id,
        merchant_country=req.merchant_country or _UNKNOWN_COUNTRY,
        pin_verified=req.pin_verified,
        cardholder_authenticated=req.cardholder_authenticated,
        transmitted_at=sent,
        card_expiry=req.card_expiry,
        cvv=_CHECK_RESULT[req.verification.card_verification_value],
        cryptogram=_CHECK_RESULT[req.verification.chip_cryptogram],
        pin=_CHECK_RESULT[req.verification.pin],
    )


def to_standin_reversal(req: pb.ReverseRequest) -> StandInReversal:
    """Convert a validated ReverseRequest to stand-in's own type."""
    sent = req.transmitted_at.ToDatetime(tzinfo=UTC) if req.HasField("transmitted_at") else datetime.now(UTC)
    return StandInReversal(
        acquirer_id=req.acquirer_id,
        reversal_id=req.reversal_id,
        original_request_id=req.original_request_id,
        pan=req.pan,
        final_amount_minor=req.final_amount_minor,
        currency=req.currency,
        reason=ReversalReason(pb.ReversalReason.Name(req.reason)),
        transmitted_at=sent,
        original_amount_minor=req.original_amount_minor,
    )


def to_response(decision: StandInDecision) -> pb.AuthorizeResponse:
    return pb.AuthorizeResponse(
        request_id=decision.request_id,
        decision=pb.APPROVED if decision.approved else pb.DECLINED,
        response_code=decision.response_code.value,
        approval_code=decision.approval_code,
        source=pb.STAND_IN,
        standin_reason=proto_reason(decision.reason),
        decision_id=decision.decision_id,
        rule=decision.rule,
        policy_version=decision.policy_version,
    )


class StandInFallback:
    """Fallback that decides in stand-in (risk policy, fleet counters, durable journal).

    A decision is never cancelled half way: it runs in a task of its own, shielded from the
    caller's cancellation (a client that gives up, a deadline), so what is recorded is a whole
    decision. If the answer then never reaches the acquirer, its timeout reversal releases it.
    The engine's own Redis deadlines keep a decision inside the stand-in reserve.
    """

    def __init__(self, engine: StandIn, tracer: Tracer | None = None, *, reuse_check: bool = True) -> None:
        self.engine = engine
        self._tracer = tracer
        self._running: set[asyncio.Task[Any]] = set()
        self.balances = BalanceFeed(engine, engine.balance_settings.queue_size)
        self.reuse = ReuseCheck(engine, enabled=reuse_check)

    def observe(self, request: pb.AuthorizeRequest, response: pb.AuthorizeResponse) -> None:
        self.balances.offer(request, response)

    def may_refuse_reuse(self) -> bool:
        return self.reuse.active

    async def refuses_reuse(self, request: pb.AuthorizeRequest, deadline: float) -> bool:
        return await self.reuse.refuses(to_standin_request(request), deadline)

    async def answer(
        self,
        request: pb.AuthorizeRequest,
        cause: Reason,
        deadline: float,
        trace_context: str = "",
        *,
        maybe_reached_issuer: bool = False,
    ) -> pb.AuthorizeResponse:
        # the decision is journaled and advised under the request's id, and the issuer books the
        # advised decision, not its own late answer: a repeat's decision is advised again (engine)
        return await self._traced(request, cause, trace_context, rule=None, again=maybe_reached_issuer)

    async def decline(
        self, request: pb.AuthorizeRequest, cause: Reason, rule: str, trace_context: str = ""
    ) -> pb.AuthorizeResponse:
        return await self._traced(request, cause, trace_context, rule=rule)  # engine.decline: again

    async def _traced(
        self,
        request: pb.AuthorizeRequest,
        cause: Reason,
        trace_context: str,
        rule: str | None,
        *,
        again: bool = False,
    ) -> pb.AuthorizeResponse:
        if self._tracer is None:
            decision = await self._decide(request, cause, trace_context, rule, again=again)
            return decline_91(request, cause) if decision is None else to_response(decision)
        with self._tracer.start_as_current_span(
            STANDIN_SPAN,
            attributes={"authgw.standin.cause": cause.value},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            decision = await self._decide(request, cause, trace_context, rule, again=again)
            if decision is None:
                span.set_status(Status(StatusCode.ERROR, "stand-in could not decide: declined 91"))
                return decline_91(request, cause)
            if span.is_recording():
                span.set_attributes(
                    {
                        "authgw.standin.rule": decision.rule,
                        "authgw.standin.response_code": decision.response_code.value,
                        "authgw.standin.approved": decision.approved,
                        "authgw.standin.risk_tier": decision.risk_tier,
                        "authgw.standin.reason": decision.reason.value,
                        "authgw.standin.journal": decision.journal.value,
                        "authgw.standin.decision_id": decision.decision_id,
                    }
                )
            return to_response(decision)

    async def _decide(
        self,
        request: pb.AuthorizeRequest,
        cause: Reason,
        trace_context: str,
        rule: str | None,
        *,
        again: bool = False,
    ) -> StandInDecision | None:
        """The engine's decision, or None when it could not decide (the caller declines 91)."""
        sin = to_standin_request(request)
        self.reuse.note_standin()
        if rule is None:
            work = self.engine.decide(sin, cause, trace_context, maybe_reached_issuer=again)
        else:
            work = self.engine.decline(sin, cause, rule, trace_context)
        try:
            return await self._shielded(work)
        except ReusedRequestIdError as exc:
            raise RequestRefused(request.request_id) from exc
        except StandInError as exc:  # closed engine (shutdown) or a bug's guard: never an approval
            log.warning("stand-in could not decide request_id=%s: %s", request.request_id, exc)
            return None

    async def advise(self, advice: pb.AcquirerAdvice, trace_context: str = "") -> StandInDecision | None:
        """Record a validated acquirer advice (gateway/advising.py); None when nothing could record it.

        Raises RequestRefused for a request id reused with other content.
        """
        kind = AcquirerAdviceKind(pb.AcquirerAdviceKind.Name(advice.kind))
        self.reuse.note_standin()
        work = self.engine.advise(
            to_standin_request(advice.request), kind, advice.approval_code, trace_context
        )
        try:
            decision = await self._shielded(work)
        except ReusedRequestIdError as exc:
            raise RequestRefused(advice.request.request_id) from exc
        except StandInError as exc:  # closed engine (shutdown)
            log.warning("stand-in could not record advice request_id=%s: %s", advice.request.request_id, exc)
            return None
        if decision.journal is JournalKind.NONE or not decision.approved:
            return None  # recorded nowhere: never acknowledged
        return decision

    async def reverse(
        self, request: pb.ReverseRequest, *, store: bool, trace_context: str = ""
    ) -> ReversalOutcome | None:
        """Apply or record a reversal; None when neither Redis nor the local journal can."""
        try:
            return await self._shielded(
                self.engine.reverse(to_standin_reversal(request), store=store, trace_context=trace_context)
            )
        except StandInError as exc:
            log.warning("stand-in could not record reversal %s: %s", request.reversal_id, exc)
            return None

    async def _shielded(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` to its end whatever happens to the caller (a whole record, or none)."""
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    async def start(self) -> None:
        await self.engine.start()
        self.balances.start()
        self.reuse.start()

    async def close(self) -> None:
        await self.reuse.close()
        await self.balances.close()
        if self._running:  # decisions whose callers went away still finish and are recorded
            await asyncio.wait(set(self._running))
        await self.engine.close()


def build_standin(cfg: GatewayConfig, tracer: Tracer | None = None) -> StandInFallback | None:
    """The stand-in fallback configured by `[standin]`, or None when the section is absent."""
    if cfg.standin is None:
        return None
    return StandInFallback(
        StandIn.from_config(cfg.standin, tracer=tracer), tracer, reuse_check=cfg.reuse_check
    )
