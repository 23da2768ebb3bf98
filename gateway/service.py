"""The Authorization servicer: validate, route within the deadline, fall back to stand-in.

This is the only place where gateway errors become gRPC status codes: invalid
input is INVALID_ARGUMENT naming the field; every valid request gets an answer
(an issuer's, stand-in's, or a 91 decline), never UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import grpc

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from gateway.config import GatewayConfig
from gateway.errors import InvalidRequest
from gateway.router import Router, RouteResult
from gateway.standin_mode import StandInMode
from gateway.validation import validate
from health import Mode

__all__ = ["AuthorizationService", "DeclineFallback", "Fallback"]

log = logging.getLogger("authgw.service")


class Fallback(Protocol):
    """Answers when no issuer did (stand-in, or a plain 91 decline)."""

    async def answer(self, request: pb.AuthorizeRequest, cause: str, deadline: float) -> pb.AuthorizeResponse:
        """Decide for `request`; `cause` is a StandInReason name."""
        ...


def decline_91(request: pb.AuthorizeRequest, cause: str) -> pb.AuthorizeResponse:
    """Issuer unavailable: the safe answer when nothing can decide."""
    return pb.AuthorizeResponse(
        request_id=request.request_id,
        decision=pb.DECLINED,
        response_code="91",
        source=pb.STAND_IN,
        standin_reason=cause,
        decision_id=f"gw-{uuid.uuid4().hex}",
    )


class DeclineFallback:
    """Fallback without stand-in: decline with 91 and say why."""

    async def answer(self, request: pb.AuthorizeRequest, cause: str, deadline: float) -> pb.AuthorizeResponse:
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
    ) -> None:
        self._cfg = cfg
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
        try:
            validate(request, self._cfg.max_amount_minor)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self.in_flight += 1
        self.idle.clear()
        try:
            return await self.decide(request, context.time_remaining())
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()

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
            return await self._fallback.answer(request, "FORCED", deadline)
        standin_mode = self._standin_mode
        if standin_mode is not None and standin_mode.active and mode != Mode.FORCE_ISSUER:
            # every pool is down: no customer request waits on them while probes run
            return await self._fallback.answer(request, standin_mode.reason, deadline)
        result = await self._router.route(request, deadline)
        if result.response is not None:
            return result.response
        self._log_failure(request, result)
        if mode == Mode.FORCE_ISSUER:
            return decline_91(request, result.cause)
        if standin_mode is not None:
            standin_mode.maybe_enter(result.cause)
        return await self._fallback.answer(request, result.cause, deadline)

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
