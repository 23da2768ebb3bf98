"""Spans of one authorization: the server span, one client span per attempt, span attributes.

Called only when tracing is on (the caller holds a Tracer, not None); with
tracing off the router and servicer take their plain path and nothing here
runs. Attribute dicts are built only for spans that record (`is_recording()`:
sampled out spans still propagate their context but cost no attributes).

No attribute holds a card number: the request's PAN is never read here, and
free text that comes from outside (issuer error details, request ids) goes
through `mask_card_numbers` first.

Attributes:
    server span     rpc.*, authgw.request_id, authgw.decision.{source, response_code, decision,
                    pool, member, standin_reason, rule}, error status on INVALID_ARGUMENT
    authgw.attempt  rpc.*, server.address, authgw.pool, authgw.member, authgw.attempt.{timeout_ms,
                    number, outcome (AttemptKind value), elapsed_ms, failure_reason, failure_detail},
                    authgw.response_code
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from authgw.v1 import authorization_pb2 as pb
from gateway.attempt import Attempt, AttemptKind, LateAnswers, run_attempt
from gateway.logs import mask_card_numbers
from gateway.member import Member

__all__ = [
    "ATTEMPT_SPAN",
    "EJECTED_EVENT",
    "SERVER_SPAN",
    "annotate_decision",
    "incoming_context",
    "invalid_request",
    "traced_attempt",
]

SERVER_SPAN = "authgw.v1.Authorization/Authorize"
ATTEMPT_SPAN = "authgw.attempt"
EJECTED_EVENT = "authgw.member.ejected"

SERVER_ATTRIBUTES: dict[str, AttributeValue] = {
    "rpc.system": "grpc",
    "rpc.service": "authgw.v1.Authorization",
    "rpc.method": "Authorize",
}
_ISSUER_RPC: dict[str, AttributeValue] = {
    "rpc.system": "grpc",
    "rpc.service": "authgw.v1.IssuerHost",
    "rpc.method": "Authorize",
}
_SOURCE = {v: pb.Source.Name(v) for v in pb.Source.values()}
_DECISION = {v: pb.Decision.Name(v) for v in pb.Decision.values()}
_REASON = {v: pb.StandInReason.Name(v) for v in pb.StandInReason.values()}


def incoming_context(metadata: Iterable[tuple[str, Any]] | None) -> Any:
    """The caller's trace context from gRPC invocation metadata (global propagator: W3C by default)."""
    carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
    return propagate.extract(carrier)


def annotate_decision(span: Span, request: pb.AuthorizeRequest, response: pb.AuthorizeResponse) -> None:
    """What was decided, on the server span (never the PAN)."""
    if not span.is_recording():
        return
    attrs: dict[str, AttributeValue] = {
        "authgw.request_id": mask_card_numbers(request.request_id),
        "authgw.decision.source": _SOURCE.get(response.source, str(response.source)),
        "authgw.decision.decision": _DECISION.get(response.decision, str(response.decision)),
        "authgw.decision.response_code": response.response_code,
    }
    if response.pool:
        attrs["authgw.decision.pool"] = response.pool
        attrs["authgw.decision.member"] = response.member
    if response.source == pb.STAND_IN:
        attrs["authgw.decision.standin_reason"] = _REASON.get(response.standin_reason, "")
        attrs["authgw.decision.rule"] = response.rule
        attrs["authgw.decision.decision_id"] = response.decision_id
    span.set_attributes(attrs)


def invalid_request(span: Span, problem: str) -> None:
    """INVALID_ARGUMENT: the validation message names the field and rule, never its value."""
    span.set_status(Status(StatusCode.ERROR, f"INVALID_ARGUMENT: {mask_card_numbers(problem)}"))


async def traced_attempt(
    tracer: Tracer,
    member: Member,
    request: pb.AuthorizeRequest,
    *,
    number: int,
    timeout_s: float,
    late: LateAnswers,
    late_window_s: float,
    metadata: tuple[tuple[str, str], ...],
) -> Attempt:
    """run_attempt inside a client span whose context travels to the issuer host in the metadata."""
    with tracer.start_as_current_span(
        ATTEMPT_SPAN, kind=SpanKind.CLIENT, record_exception=False, set_status_on_exception=False
    ) as span:
        recording = span.is_recording()
        if recording:
            span.set_attributes(_ISSUER_RPC)
            span.set_attributes(
                {
                    "server.address": member.address,
                    "authgw.pool": member.pool,
                    "authgw.member": member.name,
                    "authgw.attempt.number": number,
                    "authgw.attempt.timeout_ms": round(timeout_s * 1000),
                }
            )
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the attempt span is current: the issuer's span becomes its child
        attempt = await run_attempt(
            member,
            request,
            timeout_s=timeout_s,
            late=late,
            late_window_s=late_window_s,
            metadata=(*metadata, *carrier.items()),
        )
        if recording:
            _annotate_attempt(span, attempt)
        return attempt


def _annotate_attempt(span: Span, attempt: Attempt) -> None:
    span.set_attribute("authgw.attempt.outcome", attempt.kind.value)
    span.set_attribute("authgw.attempt.elapsed_ms", round(attempt.elapsed_s * 1000, 3))
    if attempt.response is not None:
        span.set_attribute("authgw.response_code", attempt.response.response_code)
    if attempt.kind is AttemptKind.ANSWERED:
        return
    span.set_attribute("authgw.attempt.failure_reason", attempt.kind.value)
    span.set_attribute("authgw.attempt.failure_detail", mask_card_numbers(attempt.detail))
    span.set_status(Status(StatusCode.ERROR, attempt.kind.value))
