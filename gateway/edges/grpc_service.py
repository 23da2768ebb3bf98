"""The Authorization servicer: the gRPC edge of gateway/authorizing.py and gateway/reversing.py.

This is the only place where gateway errors become gRPC status codes: invalid
input is INVALID_ARGUMENT naming the field; a request id reused with other content
is ALREADY_EXISTS; an authorization past the adaptive concurrency limit is
RESOURCE_EXHAUSTED at once (gateway/admission.py: overload, retried on another
gateway); every other valid request gets an answer (an issuer's, stand-in's,
or a 91 decline), never UNAVAILABLE. A reversal is UNAVAILABLE only
when no issuer answered and nothing could record it, an acquirer advice only when
nothing could record it (gateway/advising.py; the acquirer repeats either).

With tracing on (`spans`), each call runs in a server span continuing the
caller's W3C trace context; the span's traceparent goes to stand-in with the
request, so the journal entry (and later its settlement) points back to this
authorization. Without it, no span is built at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Status, StatusCode, set_span_in_context

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from gateway.admission import AdaptiveLimit
from gateway.advising import AdviceDesk, AdviceRecorder
from gateway.authorizing import Authorizer
from gateway.config import GatewayConfig
from gateway.edges.access import AccessControl
from gateway.edges.grpc_codec import Undecodable
from gateway.edges.validation import EdgeLimits, validate, validate_advice, validate_reversal
from gateway.errors import AdviceUnavailable, InvalidRequest, RequestRefused, ReversalUnavailable
from gateway.fallback import DeclineFallback, Fallback, decline_91
from gateway.metrics import EDGE_GRPC, GatewayMetrics
from gateway.reversing import ReversalDesk
from gateway.router import Router
from gateway.standin_mode import StandInMode
from gateway.tracing import ServerSpans, annotate_decision, invalid_request
from health import Mode

__all__ = ["AuthorizationService", "DeclineFallback", "Fallback", "decline_91"]

log = logging.getLogger("authgw.service")

M = TypeVar("M")
OVERLOADED = "gateway overloaded: authorization refused before any processing; retry on another gateway"


class AuthorizationService(pb_grpc.AuthorizationServicer):
    """authgw.v1.Authorization."""

    def __init__(
        self,
        cfg: GatewayConfig,
        router: Router,
        fallback: Fallback,
        *,
        mode: Callable[[], Mode] = lambda: Mode.AUTO,
        standin_mode: StandInMode | None = None,
        clock: Callable[[], float] = time.monotonic,
        spans: ServerSpans | None = None,
        metrics: GatewayMetrics | None = None,
        access: AccessControl | None = None,
        admission: AdaptiveLimit | None = None,
    ) -> None:
        self._cfg = cfg
        self._admission = admission
        self._limits = EdgeLimits(cfg.max_amount_minor, cfg.transmitted_at_window_s)
        self._access = access or AccessControl(cfg.security)
        self._spans = spans
        self._metrics = metrics
        self._clock = clock
        flow = {"mode": mode, "standin_mode": standin_mode, "traced": spans is not None, "clock": clock}
        self._authorizer = Authorizer(cfg, router, fallback, **flow)  # type: ignore[arg-type]
        self._reversals = ReversalDesk(cfg, router, fallback, **flow)  # type: ignore[arg-type]
        recorder = fallback if isinstance(fallback, AdviceRecorder) else None
        self._advices = AdviceDesk(recorder, traced=spans is not None, metrics=metrics)
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def authorizer(self) -> Authorizer:
        """The flow every edge's authorizations go through (the ISO 8583 listener's too)."""
        return self._authorizer

    @property
    def reversals(self) -> ReversalDesk:
        """The flow every edge's reversals go through."""
        return self._reversals

    @property
    def advices(self) -> AdviceDesk:
        """The flow every edge's acquirer advices go through (the ISO 8583 listener's 0120/0220 too)."""
        return self._advices

    async def Authorize(
        self,
        request: pb.AuthorizeRequest | Undecodable,
        context: grpc.aio.ServicerContext[pb.AuthorizeRequest, pb.AuthorizeResponse],
    ) -> pb.AuthorizeResponse:
        if self._metrics is not None:
            self._metrics.received[EDGE_GRPC] += 1
        admission = self._admission
        if admission is None:
            return await self._traced(request, context)
        if not admission.try_acquire():  # before decoding checks, spans, metrics: a refusal is cheap
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, OVERLOADED)
        try:
            return await self._traced(request, context)
        finally:
            admission.release()

    async def _traced(
        self,
        request: pb.AuthorizeRequest | Undecodable,
        context: grpc.aio.ServicerContext[pb.AuthorizeRequest, pb.AuthorizeResponse],
    ) -> pb.AuthorizeResponse:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.problem())
        if self._spans is None:
            return await self._authorize(request, context, None)
        # start_span + attach rather than start_as_current_span: no generator-based context manager
        # per request, and exceptions are handled here (their texts never reach the span).
        span = self._spans.start(context.invocation_metadata())
        token = otel_context.attach(set_span_in_context(span))
        try:
            response = await self._authorize(request, context, span)
        except grpc.aio.AbortError:
            raise  # INVALID_ARGUMENT, already on the span
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        else:
            annotate_decision(span, request, response)
            return response
        finally:
            otel_context.detach(token)
            span.end()

    async def _authorize(
        self,
        request: pb.AuthorizeRequest,
        context: grpc.aio.ServicerContext[pb.AuthorizeRequest, pb.AuthorizeResponse],
        span: Span | None,
    ) -> pb.AuthorizeResponse:
        started = self._clock()
        try:
            validate(request, self._limits)
        except InvalidRequest as exc:
            if span is not None:
                invalid_request(span, str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self._authorized(context, request.acquirer_id, span)
        self.in_flight += 1
        self.idle.clear()
        try:
            response = await self.decide(request, context.time_remaining())
        except RequestRefused as exc:
            if self._metrics is not None:
                self._metrics.record_refusal("reused_request_id")
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, "ALREADY_EXISTS"))
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()
        if self._metrics is not None:
            self._metrics.record_decision(response, self._clock() - started)
        return response

    async def decide(
        self, request: pb.AuthorizeRequest, client_remaining_s: float | None
    ) -> pb.AuthorizeResponse:
        """Route a valid request; always answers within the deadline (raises RequestRefused)."""
        return await self._authorizer.decide(request, client_remaining_s)

    async def _authorized(self, context: Any, acquirer_id: str, span: Span | None = None) -> None:
        """PERMISSION_DENIED unless the caller's certificate may act as `acquirer_id` (edges/access.py)."""
        reason = self._access.check(context, acquirer_id)
        if reason is None:
            return
        if span is not None:
            span.set_status(Status(StatusCode.ERROR, "PERMISSION_DENIED"))
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)

    async def _checked(
        self,
        request: M | Undecodable,
        context: grpc.aio.ServicerContext[Any, Any],
        check: Callable[[M, EdgeLimits], None],
    ) -> M:
        """The message; INVALID_ARGUMENT (naming the field) if it is undecodable or `check` refuses it."""
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.problem())
        try:
            check(request, self._limits)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return request

    async def Reverse(
        self,
        request: pb.ReverseRequest | Undecodable,
        context: grpc.aio.ServicerContext[pb.ReverseRequest, pb.ReverseResponse],
    ) -> pb.ReverseResponse:
        if self._metrics is not None:
            self._metrics.received[EDGE_GRPC] += 1
        reversal = await self._checked(request, context, validate_reversal)
        await self._authorized(context, reversal.acquirer_id)
        try:
            response = await self._reversals.reverse(reversal, context.time_remaining())
        except ReversalUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        if self._metrics is not None:
            self._metrics.record_reversal(response)
        return response

    async def Advise(
        self,
        request: pb.AcquirerAdvice | Undecodable,
        context: grpc.aio.ServicerContext[pb.AcquirerAdvice, pb.AdviceAck],
    ) -> pb.AdviceAck:
        if self._metrics is not None:
            self._metrics.received[EDGE_GRPC] += 1
        advice = await self._checked(request, context, validate_advice)
        await self._authorized(context, advice.request.acquirer_id)
        try:
            return await self._advices.advise(advice)
        except RequestRefused as exc:
            if self._metrics is not None:
                self._metrics.record_refusal("reused_request_id")
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except AdviceUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
