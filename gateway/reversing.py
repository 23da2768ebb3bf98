"""One reversal through the gateway: to the issuer like an authorization, or recorded and forwarded later.

    reversal of a stand-in decision     → stand-in applies it (the card's window released) and
                                          journals it behind the original: forwarded in the card's order
    the card has entries the issuer has → recorded, queued behind them (a reversal never overtakes
    not acknowledged, or stand-in mode    what it reverses), forwarded until acknowledged
    otherwise                           → to the issuer, same deadline budget and safe retries as an
                                          authorization (idempotent by acquirer and reversal id); no
                                          issuer answers → recorded (STORED) and forwarded later

A reversal is always accepted once recorded. When nothing can record it and no issuer
answers, ReversalUnavailable: the acquirer repeats it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from authgw.observability import current_traceparent
from authgw.v1 import authorization_pb2 as pb
from gateway.attempt import REVERSE
from gateway.authorizing import budget
from gateway.config import GatewayConfig
from gateway.errors import ReversalUnavailable
from gateway.fallback import Fallback
from gateway.router import Router
from gateway.standin_mode import StandInMode
from health import Mode
from standin.types import ReversalOutcome, ReversalStatus

__all__ = ["ReversalDesk"]

_STATUS = {
    ReversalStatus.APPLIED: pb.APPLIED,
    ReversalStatus.STORED: pb.STORED,
    ReversalStatus.NO_EFFECT: pb.NO_EFFECT,
    ReversalStatus.DECLINED: pb.NO_EFFECT,  # of a decline: no effect for the acquirer (journaled)
}


def _answer(request: pb.ReverseRequest, outcome: ReversalOutcome) -> pb.ReverseResponse:
    return pb.ReverseResponse(
        reversal_id=request.reversal_id,
        status=_STATUS.get(outcome.status, pb.STORED),
        response_code="00",
        source=pb.STAND_IN,
    )


class ReversalDesk:
    """Takes reversals (see the module docstring)."""

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

    async def reverse(
        self, request: pb.ReverseRequest, client_remaining_s: float | None
    ) -> pb.ReverseResponse:
        """Apply, forward or record a valid reversal; raises ReversalUnavailable."""
        b = budget(self._cfg, self._clock(), client_remaining_s)
        trace_context = current_traceparent() if self._traced else ""
        mode = self._mode()
        issuers_down = self._standin_mode is not None and self._standin_mode.active
        store_now = mode is Mode.FORCE_STANDIN or (issuers_down and mode is not Mode.FORCE_ISSUER)
        outcome = await self._fallback.reverse(request, store=store_now, trace_context=trace_context)
        if outcome is not None and outcome.status is not ReversalStatus.FORWARD:
            return _answer(request, outcome)
        result = await self._router.route(request, b.deadline, client_bound=b.client_bound, method=REVERSE)
        if result.response is not None:
            response: pb.ReverseResponse = result.response
            return response
        if outcome is None:  # nothing could record it
            raise ReversalUnavailable(f"reversal {request.reversal_id!r}: no issuer answered, none recorded")
        stored = await self._fallback.reverse(request, store=True, trace_context=trace_context)
        if stored is None:
            raise ReversalUnavailable(f"reversal {request.reversal_id!r}: no issuer answered, none recorded")
        return _answer(request, stored)
