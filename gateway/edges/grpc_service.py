"""The Authorization servicer: validate, route within the deadline, fall back to stand-in.

This is the only place where gateway errors become gRPC status codes: invalid
input is INVALID_ARGUMENT naming the field; every valid request gets an answer
(an issuer's, stand-in's, or a 91 decline), never UNAVAILABLE.

With tracing on (`spans`), each call runs in a server span continuing the
caller's W3C trace context; the span's traceparent goes to stand-in with the
request, so the journal entry (and later its settlement) points back to this
authorization. Without it, no span is built at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import grpc
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Status, StatusCode, set_span_in_context

from authgw.codes import ResponseCode
from authgw.observability import current_traceparent
from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from gateway.config import GatewayConfig
from gateway.edges.validation import validate
from gateway.errors import InvalidRequest
from gateway.metrics import GatewayMetrics
from gateway.router import Router, RouteResult
from gateway.standin_mode import StandInMode
from gateway.tracing import ServerSpans, annotate_decision, invalid_request
from health import Mode
from standin.types import Reason

__all__ = ["AuthorizationService", "DeclineFallback", "Fallback"]

log = logging.getLogger("authgw.service")


class Fallback(Protocol):
    """Answers when no issuer did (stand-in, or a plain 91 decline)."""

    async def answer(
        self, request: pb.AuthorizeRequest, cause: Reason, deadline: float, trace_context: str = ""
    ) -> pb.AuthorizeResponse:
        """Decide for `request` (`cause`: why no issuer did; `trace_context`: a W3C traceparent)."""
        ...


def decline_91(request: pb.AuthorizeRequest, cause: Reason) -> pb.AuthorizeResponse:
    """Issuer unavailable: the safe answer when nothing can decide."""
    return pb.AuthorizeResponse(
        request_id=request.request_id,
        decision=pb.DECLINED,
        response_code=ResponseCode.ISSUER_UNAVAILABLE.value,
        source=pb.STAND_IN,
        standin_reason=cause.value,  # Reason names are the proto enum's
        decision_id=f"gw-{uuid.uuid4().hex}",
    )


class DeclineFallback:
    """Fallback without stand-in: decline with 91 and say why."""

    async def answer(
        self, request: pb.AuthorizeRequest, cause: Reason, deadline: float, trace_context: str = ""
    ) -> pb.AuthorizeResponse:
        return decline_91(request, cause)


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
    ) -> None:
        self._cfg = cfg
        self._spans = spans
        self._metrics = metrics
        self._router = router
        self._fallback = fallback
        self._mode = mode
        self._standin_mode = standin_mode
        self._clock = clock
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def Authorize(
        self,
        request: pb.AuthorizeRequest,
        context: grpc.aio.ServicerContext[pb.AuthorizeRequest, pb.AuthorizeResponse],
    ) -> pb.AuthorizeResponse:
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
            validate(request, self._cfg.max_amount_minor)
        except InvalidRequest as exc:
            if span is not None:
                invalid_request(span, str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self.in_flight += 1
        self.idle.clear()
        try:
            response = await self.decide(request, context.time_remaining())
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
        """Route a valid request; always returns an answer within the deadline."""
        budget = self._cfg.routing.deadline_s
        if client_remaining_s is not None:
            budget = min(budget, client_remaining_s)
        deadline = self._clock() + budget
        mode = self._mode()
        if mode == Mode.FORCE_STANDIN:
            return await self._fallback.answer(request, Reason.FORCED, deadline, self._traceparent())
        standin_mode = self._standin_mode
        if standin_mode is not None and standin_mode.active and mode != Mode.FORCE_ISSUER:
            # every pool is down: no customer request waits on them while probes run
            return await self._fallback.answer(request, standin_mode.cause, deadline, self._traceparent())
        result = await self._router.route(request, deadline)
        if result.response is not None:
            return result.response
        self._log_failure(request, result)
        cause = result.cause or Reason.ALL_POOLS_FAILED
        if mode == Mode.FORCE_ISSUER:
            return decline_91(request, cause)
        if standin_mode is not None:
            standin_mode.maybe_enter(cause)
        return await self._fallback.answer(request, cause, deadline, self._traceparent())

    def _traceparent(self) -> str:
        return "" if self._spans is None else current_traceparent()

    @staticmethod
    def _log_failure(request: pb.AuthorizeRequest, result: RouteResult) -> None:
        if log.isEnabledFor(logging.DEBUG):
            tried = ", ".join(f"{a.pool}/{a.member}:{a.kind.value}" for a in result.attempts) or "none"
            log.debug(
                "no issuer answered request_id=%s cause=%s attempts=%s",
                request.request_id,
                result.cause,
                tried,
            )
