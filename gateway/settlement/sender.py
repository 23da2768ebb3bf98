"""Stand-in advices to issuer hosts over IssuerHost/Advise.

`standin.Settlement` reads the journal and decides what to send; this module is the
only place that knows both stand-in's `Advice` and the protobuf `StandInAdvice`:

    to_pb_advice(advice)        the advice as the issuer host receives it (PAN included)
    GrpcAdviceSender(router)    sends it over the router's member channels

GrpcAdviceSender picks, among the pools by priority, the first that is not drained
and has a usable member (not ejected by the router, not cooling off here after
failed advices), then the member with fewer advices in flight of two drawn (power of
two choices). Router state is only read: advices do not feed the router's ejection
or pool verdicts, which judge authorizations. The current span's W3C context goes
with each call, so the issuer's span joins the settlement span.

gRPC status -> SendOutcome:
    OK                                  ACKED (DUPLICATE when AdviceAck.duplicate)
    ALREADY_EXISTS                      DUPLICATE (an issuer may say "already have it" so)
    INVALID_ARGUMENT                    POISON: the advice itself is malformed
    FAILED_PRECONDITION, NOT_FOUND,     REJECTED: the issuer answered no; retried, then
    PERMISSION_DENIED, UNAUTHENTICATED,           a dead letter
    OUT_OF_RANGE
    anything else                       FAILED: no verdict (unavailable, deadline, overload,
                                        UNIMPLEMENTED on a host not yet upgraded)
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace

from authgw.observability import mask_card_numbers, outgoing_metadata
from authgw.v1 import authorization_pb2 as pb
from gateway.fallback import proto_reason
from gateway.member import Member
from gateway.router import Router
from standin.settlement.advice import Advice, ReversalAdvice, SendOutcome, SendResult
from standin.types import AcquirerAdviceKind

__all__ = ["GrpcAdviceSender", "to_pb_advice", "to_pb_reversal"]

log = logging.getLogger("authgw.settlement")

_UNKNOWN_COUNTRY = "ZZ"  # what the stand-in edge records for an empty merchant_country (standin_link.py)

# An acquirer advice is journaled under its kind's rule (standin.types.AcquirerAdviceKind).
_ORIGINS: dict[AcquirerAdviceKind | None, pb.AdviceOrigin] = {
    AcquirerAdviceKind.FORCED_POST: pb.ACQUIRER_FORCED_POST,
    AcquirerAdviceKind.OFFLINE_APPROVED: pb.ACQUIRER_OFFLINE,
}

_REJECTED = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)  # an aware datetime: converted to UTC
    return ts


def to_pb_advice(advice: Advice) -> pb.StandInAdvice:
    """The advice as IssuerHost/Advise takes it: the original request, PAN included, and the decision."""
    req, decision = advice.request, advice.decision
    return pb.StandInAdvice(
        decision_id=decision.decision_id,
        request=pb.AuthorizeRequest(
            request_id=req.request_id,
            acquirer_id=req.acquirer_id,
            pan=req.pan,
            amount_minor=req.amount_minor,
            currency=req.currency,
            mcc=req.mcc,
            channel=req.channel.value,  # enum names match the proto's
            merchant_id=req.merchant_id,
            terminal_id=req.terminal_id,
            merchant_country="" if req.merchant_country == _UNKNOWN_COUNTRY else req.merchant_country,
            pin_verified=req.pin_verified,
            cardholder_authenticated=req.cardholder_authenticated,
            transmitted_at=_timestamp(req.transmitted_at),
        ),
        decision=pb.APPROVED if decision.approved else pb.DECLINED,
        response_code=decision.response_code.value,
        approval_code=decision.approval_code,
        reason=proto_reason(decision.reason),
        rule=decision.rule,
        decided_at=_timestamp(decision.decided_at),
        gateway_instance=decision.gateway_instance,
        answered_at=_timestamp(decision.answered),
        origin=_ORIGINS.get(AcquirerAdviceKind.of_rule(decision.rule), pb.STAND_IN_DECISION),
        policy_version=decision.policy_version,
    )


def to_pb_reversal(advice: ReversalAdvice) -> pb.ReverseRequest:
    """A journaled reversal as IssuerHost/Reverse takes it."""
    r = advice.reversal
    return pb.ReverseRequest(
        acquirer_id=r.acquirer_id,
        reversal_id=r.reversal_id,
        original_request_id=r.original_request_id,
        pan=r.pan,
        final_amount_minor=r.final_amount_minor,
        reason=r.reason.value,  # names match the proto's
        currency=r.currency,
        transmitted_at=_timestamp(r.transmitted_at),
        original_amount_minor=r.original_amount_minor,
    )


def _outcome(code: grpc.StatusCode) -> SendOutcome:
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return SendOutcome.POISON
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return SendOutcome.DUPLICATE
    if code in _REJECTED:
        return SendOutcome.REJECTED
    return SendOutcome.FAILED


@dataclasses.dataclass(slots=True)
class _MemberState:
    in_flight: int = 0
    failures: int = 0
    cool_until: float = 0.0


class GrpcAdviceSender:
    """An `AdviceSender` over the router's pool members (see the module docstring)."""

    def __init__(
        self,
        router: Router,
        *,
        failures_to_cool: int = 3,
        cooloff: timedelta = timedelta(seconds=1),
        max_cooloff: timedelta = timedelta(seconds=10),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router = router
        self._failures_to_cool = failures_to_cool
        self._cooloff_s = cooloff.total_seconds()
        self._max_cooloff_s = max_cooloff.total_seconds()
        self._clock = clock
        self._members: dict[tuple[str, str, str], _MemberState] = {}
        self._rng = random.Random()

    def _state(self, member: Member) -> _MemberState:
        key = (member.pool, member.name, member.address)
        state = self._members.get(key)
        if state is None:
            state = self._members[key] = _MemberState()
        return state

    def _candidates(self, now: float) -> list[Member]:
        for pool in self._router.pools:
            if pool.drained:
                continue
            members = [
                m
                for m in pool.members.values()
                if m.ejection.usable(now) and self._state(m).cool_until <= now
            ]
            if members:
                return members
        return []

    def healthy(self) -> bool:
        """Is some member of some pool usable for advices now?"""
        return bool(self._candidates(self._clock()))

    def _pick(self) -> Member | None:
        candidates = self._candidates(self._clock())
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        a, b = self._rng.sample(candidates, 2)
        return a if self._state(a).in_flight <= self._state(b).in_flight else b

    async def send(self, advice: Advice, *, deadline: timedelta) -> SendResult:
        """IssuerHost/Advise to one member; never raises for issuer failures."""

        def verdict(ack: pb.AdviceAck, target: str) -> SendResult:
            if ack.decision_id and ack.decision_id != advice.decision_id:
                return SendResult(
                    SendOutcome.REJECTED, f"acknowledged decision {ack.decision_id!r} instead", target
                )
            return SendResult(SendOutcome.DUPLICATE if ack.duplicate else SendOutcome.ACKED, "", target)

        return await self._call("Advise", to_pb_advice(advice), deadline, verdict)

    async def reverse(self, advice: ReversalAdvice, *, deadline: timedelta) -> SendResult:
        """IssuerHost/Reverse to one member (idempotent by acquirer and reversal id)."""

        def verdict(resp: pb.ReverseResponse, target: str) -> SendResult:
            if resp.reversal_id and resp.reversal_id != advice.reversal.reversal_id:
                return SendResult(
                    SendOutcome.REJECTED, f"acknowledged reversal {resp.reversal_id!r} instead", target
                )
            return SendResult(SendOutcome.ACKED, "", target)

        return await self._call("Reverse", to_pb_reversal(advice), deadline, verdict)

    async def _call(
        self, method: str, message: Any, deadline: timedelta, verdict: Callable[[Any, str], SendResult]
    ) -> SendResult:
        member = self._pick()
        if member is None:
            return SendResult(SendOutcome.FAILED, "no usable issuer host")
        target = f"{member.pool}/{member.name}"
        state = self._state(member)
        state.in_flight += 1
        try:
            answer = await getattr(member.stub, method)(
                message,
                timeout=deadline.total_seconds(),
                metadata=outgoing_metadata(trace.get_current_span()),
            )
        except grpc.aio.AioRpcError as exc:
            outcome = _outcome(exc.code())
            result = SendResult(
                outcome, f"{exc.code().name}: {mask_card_numbers(exc.details() or '')}", target
            )
        except (grpc.aio.UsageError, grpc.aio.InternalError) as exc:  # channel closed under us (member left)
            result = SendResult(SendOutcome.FAILED, f"{type(exc).__name__}: {exc}", target)
        else:
            result = verdict(answer, target)
        finally:
            state.in_flight -= 1
        self._record(member, state, result.outcome)
        return result

    def _record(self, member: Member, state: _MemberState, outcome: SendOutcome) -> None:
        if outcome.answered:
            state.failures = 0
            return
        state.failures += 1
        if state.failures >= self._failures_to_cool:
            factor = 2 ** (state.failures - self._failures_to_cool)
            pause_s = min(self._cooloff_s * factor, self._max_cooloff_s)
            state.cool_until = self._clock() + pause_s
            if state.failures == self._failures_to_cool:
                log.warning(
                    "advices to %s/%s fail: trying others for %.1f s", member.pool, member.name, pause_s
                )
