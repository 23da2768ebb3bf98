"""One authorization through the gateway: routed within its deadline, or why no issuer answered.

Every edge (the gRPC servicer, the ISO 8583 listener) validates, then calls
`Authorizer.decide`, which always answers within the deadline:

  - force-standin, or stand-in mode on  → stand-in decides (no wait on dead pools)
  - an issuer answers                   → its answer
  - stand-in recorded the id for other  → RequestRefused, before any issuer sees it (only while
    content, not yet advised              decisions wait for their advice: gateway/reuse_check.py)
  - an issuer refuses a reused id       → RequestRefused (the edge says ALREADY_EXISTS / 94)
  - the client's deadline left no time  → 91 (CLIENT_DEADLINE): stand-in decides only because
    for a healthy issuer                  issuers are unavailable, never because a deadline is short
  - force-issuer and nothing answered   → 91
  - otherwise                           → stand-in decides (and stand-in mode may begin)
    (without `[standin]`: 91, and the issuer is told as below)

When the answer is not the issuer's and an attempt may have reached one (a timeout, a
broken connection), the outcome is recorded and advised to the issuer, authoritative for
the request: an approval the issuer made too late for the gateway is released, or merged
with a stand-in approval of the same request into one posting.
Without `[standin]` nothing records it: the gateway sends the issuer a full reversal of
the request in the background instead, in memory only (gateway.late_reversal).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from authgw.observability import current_traceparent
from authgw.v1 import authorization_pb2 as pb
from gateway.config import GatewayConfig
from gateway.errors import RequestRefused
from gateway.fallback import Fallback, decline_91
from gateway.router import Router, RouteResult
from gateway.standin_mode import StandInMode
from health import Mode
from standin.types import Reason

__all__ = ["Authorizer", "Budget", "budget"]

RULE_CLIENT_DEADLINE = "deadline.client"
RULE_FORCE_ISSUER = "mode.force_issuer"
REUSED_BEFORE_ADVICE = "decided in stand-in for other content, not yet advised to the issuer"


class Budget:
    """A request's deadline: the gateway's, or the client's when shorter (then `client_bound`)."""

    __slots__ = ("client_bound", "deadline")

    def __init__(self, deadline: float, client_bound: bool) -> None:
        self.deadline = deadline
        self.client_bound = client_bound


def budget(cfg: GatewayConfig, now: float, client_remaining_s: float | None) -> Budget:
    gateway_s = cfg.routing.deadline_s
    if client_remaining_s is not None and client_remaining_s < gateway_s:
        return Budget(now + client_remaining_s, client_bound=True)
    return Budget(now + gateway_s, client_bound=False)


class Authorizer:
    """Routes one valid authorization to an answer (see the module docstring)."""

    def __init__(
        self,
        cfg: GatewayConfig,
        router: Router,
        fallback: Fallback,
        *,
        mode: Callable[[], Mode],
        standin_mode: StandInMode | None,
        traced: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._router = router
        self._fallback = fallback
        self._mode = mode
        self._standin_mode = standin_mode
        self._traced = traced
        self._clock = clock

    def _traceparent(self) -> str:
        return current_traceparent() if self._traced else ""

    async def decide(
        self, request: pb.AuthorizeRequest, client_remaining_s: float | None
    ) -> pb.AuthorizeResponse:
        """Answer a valid request within its deadline; raises RequestRefused for a reused request id."""
        b = budget(self._cfg, self._clock(), client_remaining_s)
        mode = self._mode()
        if mode is Mode.FORCE_STANDIN:
            return await self._fallback.answer(request, Reason.FORCED, b.deadline, self._traceparent())
        standin_mode = self._standin_mode
        if standin_mode is not None and standin_mode.active and mode is not Mode.FORCE_ISSUER:
            # every pool is down: no customer request waits on them while probes run
            return await self._fallback.answer(request, standin_mode.cause, b.deadline, self._traceparent())
        if self._fallback.may_refuse_reuse() and await self._fallback.refuses_reuse(request, b.deadline):
            raise RequestRefused(request.request_id, REUSED_BEFORE_ADVICE)
        result = await self._router.route(request, b.deadline, client_bound=b.client_bound)
        if result.response is not None:
            self._fallback.observe(request, result.response)  # queued: the answer does not wait
            return result.response  # type: ignore[no-any-return]  # an AuthorizeResponse: Authorize was routed
        if result.refused is not None:
            raise RequestRefused(request.request_id, result.refused.detail)
        cause = result.cause or Reason.ALL_POOLS_FAILED
        if cause is Reason.CLIENT_DEADLINE or mode is Mode.FORCE_ISSUER:
            return await self._gateway_decline(request, result, cause, mode)
        if standin_mode is not None:
            standin_mode.maybe_enter(cause)
        return await self._fallback.answer(
            request, cause, b.deadline, self._traceparent(), maybe_reached_issuer=result.maybe_reached_issuer
        )

    async def _gateway_decline(
        self, request: pb.AuthorizeRequest, result: RouteResult, cause: Reason, mode: Mode
    ) -> pb.AuthorizeResponse:
        rule = RULE_CLIENT_DEADLINE if cause is Reason.CLIENT_DEADLINE else RULE_FORCE_ISSUER
        if result.maybe_reached_issuer:  # the issuer may hold an approval we never delivered: tell it
            return await self._fallback.decline(request, cause, rule, self._traceparent())
        return decline_91(request, cause, rule)
