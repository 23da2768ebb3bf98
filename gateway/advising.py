"""One acquirer advice through the gateway: recorded in the card's journal partition, then acknowledged.

An acquirer advice (a merchant's forced post, a terminal's offline approval) is money
already spent: the gateway never refuses one once it is recorded.

    advice (validated, the caller's own acquirer)
      └─ stand-in engine advise(): one DECIDE step (lua.py) records it APPROVED under the rule
         acquirer.forced_post / acquirer.offline, counted against the card's stand-in windows
         whatever the limits, and journals it in the card's partition (Redis stream; the local
         SQLite journal when Redis is away, moved later) -> AdviceAck (decision_id)
    settlement (a worker in every gateway) forwards each journal entry as IssuerHost/Advise,
    origin ACQUIRER_FORCED_POST / ACQUIRER_OFFLINE, in the card's order, as soon as some pool
    is healthy (it reads the stream continuously), repeated until acknowledged; the issuer
    deduplicates by decision_id.

Why through settlement and not straight to the issuer while it answers: one path posts it,
so it is posted exactly once (a direct call acknowledged but lost would need the journal
anyway), and it keeps its place behind the card's unadvised stand-in decisions and
reversals. The cost is the journal's latency (one stream read, under a second) rather
than an issuer round trip.

Same request id as an earlier request: a repeat of the advice, or an approval already on
record for that request, is acknowledged again (duplicate, nothing counted twice); an
earlier stand-in decline of the same request is superseded (the merchant forced it after
that answer: the advice's later answered_at wins at the issuer); other content is refused
(RequestRefused: ALREADY_EXISTS, ISO 8583 94). Nothing could record it: AdviceUnavailable
(UNAVAILABLE, ISO 8583 96), the acquirer repeats it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from authgw.observability import current_traceparent
from authgw.v1 import authorization_pb2 as pb
from gateway.errors import AdviceUnavailable
from gateway.metrics import GatewayMetrics
from standin.types import StandInDecision

__all__ = ["AdviceDesk", "AdviceRecorder"]


@runtime_checkable
class AdviceRecorder(Protocol):
    """What records an acquirer advice (gateway.standin_link.StandInFallback)."""

    async def advise(self, advice: pb.AcquirerAdvice, trace_context: str = "") -> StandInDecision | None:
        """The recorded decision, or None when nothing could record it; raises RequestRefused."""
        ...


class AdviceDesk:
    """Takes acquirer advices (see the module docstring)."""

    def __init__(
        self, recorder: AdviceRecorder | None, *, traced: bool = False, metrics: GatewayMetrics | None = None
    ) -> None:
        """Args:
        recorder: None for a gateway without `[standin]`: it has no journal, every advice is
            AdviceUnavailable.
        """
        self._recorder = recorder
        self._traced = traced
        self._metrics = metrics

    async def advise(self, advice: pb.AcquirerAdvice) -> pb.AdviceAck:
        """Record a valid advice; raises RequestRefused or AdviceUnavailable."""
        request_id = advice.request.request_id
        if self._recorder is None:
            raise AdviceUnavailable(f"advice {request_id!r}: this gateway has no stand-in journal")
        trace_context = current_traceparent() if self._traced else ""
        decision = await self._recorder.advise(advice, trace_context)
        if decision is None:
            raise AdviceUnavailable(f"advice {request_id!r}: neither Redis nor the local journal recorded it")
        if self._metrics is not None:
            self._metrics.record_acquirer_advice(pb.AcquirerAdviceKind.Name(advice.kind), decision.repeated)
        return pb.AdviceAck(decision_id=decision.decision_id, duplicate=decision.repeated)
