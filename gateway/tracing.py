"""Spans of one authorization: the server span, one client span per attempt, their attributes.

Called only when tracing is on (the caller holds a Tracer, not None); with
tracing off the router and servicer take their plain path and nothing here
runs. Attribute dicts are built only for spans that record (`is_recording()`:
sampled-out spans still propagate their context but cost no attributes).

Each attribute costs about as much to export (OTLP encoding in Python, in the
gateway's process) as to set, so the common path carries only what finds and
explains a trace: on the server span the request id and the decision (source,
code, pool), on an attempt span pool, member and outcome. Failures and
stand-in decisions, rare, carry more.

Head sampling (`telemetry.trace_sample_ratio`) is decided here, by ServerSpans,
before any SDK call: the SDK's sampler path costs ~20 us per request in the
running gateway even when it drops the span (3-4 us in a tight loop; the rest is
cold caches between gRPC's work). The decision follows ParentBased(TraceIdRatioBased):
a caller's sampled flag wins, otherwise `ratio` of new traces are recorded (drawn
at random per request rather than from the trace id: the gateway starts these
traces, so no other service has to reach the same decision from the id).

W3C trace context goes straight to and from the `traceparent` / `tracestate`
gRPC metadata (authgw.observability.tracecontext formats and parses it): the composite global
propagator (trace context + baggage) costs more than the rest of an attempt
span, and nothing in authgw uses baggage.

No attribute holds a card number: the request's PAN is never read here, and
free text that comes from outside (issuer error details, request ids) goes
through `mask_card_numbers` first.

Attributes:
    server span     authgw.request_id, authgw.decision.{source, response_code, pool}; on stand-in
                    also authgw.decision.{standin_reason, rule, decision_id}; INVALID_ARGUMENT as
                    error status
    authgw.attempt  authgw.pool, authgw.member, authgw.attempt.outcome (AttemptKind value);
                    authgw.response_code when the issuer answered; on failure
                    authgw.attempt.failure_reason and authgw.attempt.failure_detail, error status
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TraceState,
)
from opentelemetry.util.types import AttributeValue

from authgw.observability import TailRules
from authgw.observability.logs import mask_card_numbers
from authgw.observability.tailsampling import TailSpan
from authgw.observability.tracecontext import incoming_span_context, outgoing_metadata
from authgw.v1 import authorization_pb2 as pb
from gateway.attempt import AUTHORIZE, Attempt, LateAnswers, Method, run_attempt
from gateway.member import Member

__all__ = [
    "ATTEMPT_SPAN",
    "DECLINE_STORM_EVENT",
    "EJECTED_EVENT",
    "FAILOVER_EVENT",
    "KEEP_RULES",
    "SERVER_SPAN",
    "ServerSpans",
    "annotate_decision",
    "invalid_request",
    "traced_attempt",
]

SERVER_SPAN = "authgw.v1.Authorization/Authorize"
ATTEMPT_SPAN = "authgw.attempt"
EJECTED_EVENT = "authgw.member.ejected"
DECLINE_STORM_EVENT = "authgw.pool.decline_storm"
FAILOVER_EVENT = "authgw.failover"
STANDIN_SPAN = "authgw.standin.decide"  # gateway.standin_link's span
STANDIN_MODE_SPAN = "authgw.standin_mode"  # gateway.telemetry's span

# With `[telemetry] sampling = "tail"`: what makes an authorization's trace interesting (kept in
# full, up to tail_max_kept_per_s) besides an error status, a caller's sampled flag and latency.
KEEP_RULES = TailRules(
    spans={STANDIN_SPAN: "standin", STANDIN_MODE_SPAN: "standin_mode"},
    events={EJECTED_EVENT: "ejection", FAILOVER_EVENT: "failover", DECLINE_STORM_EVENT: "decline_storm"},
    repeated={ATTEMPT_SPAN: "retry"},
)

_SOURCE = {v: pb.Source.Name(v) for v in pb.Source.values()}
_REASON = {v: pb.StandInReason.Name(v) for v in pb.StandInReason.values()}


class ServerSpans:
    """Starts each authorization's server span, deciding head sampling itself.

    With `ratio` None the SDK's own sampler decides (OTEL_TRACES_SAMPLER, default every
    trace) and `tracer` is the ordinary one. With a ratio, `tracer` must record every root
    (Telemetry.presampled_tracer): a request is recorded when its caller's traceparent says
    sampled, or, with no caller context, with probability `ratio`. An unrecorded request gets a
    NonRecordingSpan with fresh ids (the caller's trace id when there is one), so the issuer
    and the journal still receive a valid traceparent, flagged not sampled.
    """

    __slots__ = ("_random", "_ratio", "_tracer")

    def __init__(self, tracer: Tracer, ratio: float | None = None) -> None:
        self._tracer = tracer
        self._ratio = ratio
        self._random = random.Random()

    def start(self, metadata: Iterable[tuple[str, Any]] | None) -> Span:
        remote = incoming_span_context(metadata)
        if self._ratio is not None:
            if remote is None and self._random.random() >= self._ratio:  # in [0, 1): 0 records none, 1 all
                return self._unsampled(self._random.getrandbits(128) or 1, None)
            if remote is not None and not remote.trace_flags.sampled:
                return self._unsampled(remote.trace_id, remote.trace_state)
        parent = None if remote is None else trace.set_span_in_context(NonRecordingSpan(remote))
        return self._tracer.start_span(SERVER_SPAN, parent, SpanKind.SERVER)

    def _unsampled(self, trace_id: int, state: TraceState | None) -> Span:
        span_id = self._random.getrandbits(64) or 1
        return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_state=state))


def annotate_decision(span: Span, request: pb.AuthorizeRequest, response: pb.AuthorizeResponse) -> None:
    """What was decided, on the server span (never the PAN); under tail sampling only if kept."""
    if isinstance(span, TailSpan):
        span.set_attributes_later(_decision_attributes, request, response)
    elif span.is_recording():
        span.set_attributes(_decision_attributes(request, response))


def _decision_attributes(
    request: pb.AuthorizeRequest, response: pb.AuthorizeResponse
) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        "authgw.request_id": mask_card_numbers(request.request_id),
        "authgw.decision.source": _SOURCE.get(response.source, str(response.source)),
        "authgw.decision.response_code": response.response_code,
    }
    if response.pool:
        attrs["authgw.decision.pool"] = response.pool
    if response.source == pb.STAND_IN:
        attrs["authgw.decision.standin_reason"] = _REASON.get(response.standin_reason, "")
        attrs["authgw.decision.rule"] = response.rule
        attrs["authgw.decision.decision_id"] = response.decision_id
    return attrs


def invalid_request(span: Span, problem: str) -> None:
    """INVALID_ARGUMENT: the validation message names the field and rule, never its value."""
    span.set_status(Status(StatusCode.ERROR, f"INVALID_ARGUMENT: {mask_card_numbers(problem)}"))


async def traced_attempt(
    tracer: Tracer,
    member: Member,
    request: Any,
    *,
    timeout_s: float,
    late: LateAnswers,
    late_window_s: float,
    metadata: tuple[tuple[str, str], ...],
    method: Method = AUTHORIZE,
) -> Attempt:
    """run_attempt inside a client span whose context travels to the issuer host in the metadata.

    The span is not made current: nothing runs inside it but the call, and attaching a context
    costs as much as the span's own attributes. When the authorization's span is not recorded
    (sampled out), no attempt span is built: the issuer gets that span's context, unsampled.
    """
    parent = trace.get_current_span()
    if not parent.is_recording():
        return await run_attempt(
            member,
            request,
            timeout_s=timeout_s,
            late=late,
            late_window_s=late_window_s,
            metadata=(*metadata, *outgoing_metadata(parent)),
            method=method,
        )
    span = tracer.start_span(
        ATTEMPT_SPAN,
        kind=SpanKind.CLIENT,
        attributes={"authgw.pool": member.pool, "authgw.member": member.name},
    )
    try:
        attempt = await run_attempt(
            member,
            request,
            timeout_s=timeout_s,
            late=late,
            late_window_s=late_window_s,
            metadata=(*metadata, *outgoing_metadata(span)),
            method=method,
        )
        if span.is_recording():
            _annotate_attempt(span, attempt)
        return attempt
    finally:
        span.end()


def _annotate_attempt(span: Span, attempt: Attempt) -> None:
    if attempt.kind.failed:
        span.set_status(Status(StatusCode.ERROR, attempt.kind.value))
    if isinstance(span, TailSpan):
        span.set_attributes_later(_attempt_attributes, attempt)
    else:
        span.set_attributes(_attempt_attributes(attempt))


def _attempt_attributes(attempt: Attempt) -> dict[str, AttributeValue]:
    if not attempt.kind.failed:
        return {"authgw.attempt.outcome": attempt.kind.value, "authgw.response_code": attempt.detail}
    return {
        "authgw.attempt.outcome": attempt.kind.value,
        "authgw.attempt.failure_reason": attempt.kind.value,
        "authgw.attempt.failure_detail": mask_card_numbers(attempt.detail),
    }
