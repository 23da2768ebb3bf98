"""What the ISO 8583 listener does with each request of an acquirer: the same flow as the gRPC servicer.

    0100 / 0200         map -> validate -> field 32 vs the certificate -> Authorizer.decide -> 0110 / 0210
    0400 / 0420 / 0421  map -> validate -> field 32 vs the certificate -> ReversalDesk.reverse -> 0410 / 0430
    0120 / 0220 (+ 1)   map -> validate -> field 32 vs the certificate -> advise -> 0130 / 0230
    0800                the certificate may act as an acquirer -> 0810 (001 sign-on, 002 sign-off, 301 echo)

Field 39 of the reply, beyond the decision's own code:

    30  format error: a field the contract cannot carry, or a rule of validation (logged with the
        field); the wire layer answers 30 itself to a frame that does not decode
    63  security violation: field 32 is not the acquirer the client certificate acts as (or the
        certificate is unknown or revoked), counted in authgw.access.denied; nothing reaches an issuer
    91  a reversal that no issuer answered and nothing could record (repeat it: 0421)
    94  duplicate transmission: a request id (32 + 11 + 7) reused with other content
    94  also an acquirer advice whose request id was used for other content
    96  an acquirer advice that could not be recorded (repeat it: 0121 / 0221); see gateway/advising.py

With tracing on, each authorization runs in a server span like a gRPC one (attribute
authgw.edge = iso8583), so its attempts, stand-in decision and journal entry hang under it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, set_span_in_context

from authgw.codes import ResponseCode
from authgw.iso8583 import (
    FormatError,
    Message,
    NetworkCode,
    RequestHandler,
    build_reply,
    reply_to_format_error,
)
from authgw.v1 import authorization_pb2 as pb
from gateway.authorizing import Authorizer
from gateway.edges.access import AccessControl
from gateway.edges.iso8583_mapping import (
    MappingError,
    advice_reply,
    authorization_reply,
    reversal_reply,
    to_acquirer_advice,
    to_authorize_request,
    to_reverse_request,
)
from gateway.edges.iso8583_metrics import Iso8583Counters
from gateway.edges.validation import EdgeLimits, validate, validate_reversal
from gateway.errors import AdviceUnavailable, InvalidRequest, RequestRefused, ReversalUnavailable
from gateway.metrics import GatewayMetrics
from gateway.reversing import ReversalDesk
from gateway.tracing import ServerSpans, annotate_decision, invalid_request

__all__ = ["AcquirerHandler", "AdviceUnavailable", "Advise", "Link", "advice_not_implemented"]

log = logging.getLogger("authgw.iso8583.acquirer")

SECURITY_VIOLATION = "63"  # ISO 8583:1987 field 39: security violation
_AUTHORIZATIONS = frozenset({"0100", "0200"})
_REVERSALS = frozenset({"0400", "0420", "0421"})
_ADVICES = frozenset({"0120", "0121", "0220", "0221"})
# Contract field of a validation rule -> the ISO 8583 field it came from, for the log line.
_ISO_FIELD = {
    "request_id": "32+11+7", "reversal_id": "32+11+7", "original_request_id": "90", "acquirer_id": "32",
    "pan": "2", "amount_minor": "4", "final_amount_minor": "95", "currency": "49", "mcc": "18",
    "merchant_country": "43", "merchant_id": "42", "terminal_id": "41", "transmitted_at": "7",
    "processing_code": "3", "card_expiry": "14", "stan": "11", "rrn": "37", "local_date": "13",
    "local_time": "12", "pos_entry_mode": "22", "merchant_name": "43", "merchant_city": "43",
    "sensitive.pin_block": "52", "sensitive.track2": "35", "sensitive.track1": "45",
    "sensitive.chip_data": "55",
}  # fmt: skip


Advise = Callable[[pb.AcquirerAdvice], Awaitable[pb.AdviceAck]]
"""The gateway's path for an acquirer advice (gateway.advising.AdviceDesk.advise, as gRPC
Authorization/Advise's): records it, or raises AdviceUnavailable or RequestRefused."""


async def advice_not_implemented(advice: pb.AcquirerAdvice) -> pb.AdviceAck:
    """A handler built without an Advise path (tests): nothing is recorded, 96."""
    raise AdviceUnavailable("this listener has no advice path: repeat it later")


@dataclass(slots=True)
class Link:
    """One acquirer connection as the handler sees it."""

    peer: str
    certificate: bytes | None  # PEM of the verified client certificate (None: plaintext)
    tls: bool
    signed_on: bool = False


def _fail_reply(request: Message, code: str) -> Message:
    return build_reply(request, code)


class AcquirerHandler:
    """Answers the requests of every acquirer connection of one listener (see the module docstring)."""

    def __init__(
        self,
        authorizer: Authorizer,
        reversals: ReversalDesk,
        access: AccessControl,
        limits: EdgeLimits,
        counters: Iso8583Counters,
        *,
        advise: Advise = advice_not_implemented,
        metrics: GatewayMetrics | None = None,
        spans: ServerSpans | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._authorizer = authorizer
        self._reversals = reversals
        self._access = access
        self._limits = limits
        self._counters = counters
        self._advise = advise
        self._metrics = metrics
        self._spans = spans
        self._clock = clock
        self._now = now

    def for_link(self, link: Link) -> RequestHandler:
        """The request handler of one connection."""

        async def handle(message: Message) -> Message | None:
            reply = await self.handle(link, message)
            self._counters.messages[message.mti, reply.text(39) if reply is not None else "none"] += 1
            return reply

        return handle

    async def on_format_error(self, error: FormatError) -> Message | None:
        """A frame that does not decode: 30 when its MTI and keys could be read, else a log line (above)."""
        reply = reply_to_format_error(error)
        self._counters.format_errors[reply is not None] += 1
        return reply

    async def handle(self, link: Link, message: Message) -> Message | None:
        """The reply to one decoded request."""
        mti = message.mti
        if mti in _AUTHORIZATIONS:
            return await self._authorize(link, message)
        if mti in _REVERSALS:
            return await self._reverse(link, message)
        if mti in _ADVICES:
            return await self._acquirer_advice(link, message)
        if mti == "0800":
            return self._network(link, message)
        log.warning("%s from %s: not a request an acquirer sends here, answered 30", mti, link.peer)
        return _fail_reply(message, ResponseCode.FORMAT_ERROR)

    def _refused(self, link: Link, message: Message, problem: Exception, span: Span | None = None) -> Message:
        """30: the message could not become a valid contract request; the log names the field."""
        if isinstance(problem, InvalidRequest):
            where = f"field {_ISO_FIELD.get(problem.field, problem.field)} ({problem})"
        else:
            where = str(problem)
        log.warning("%s %s from %s answered 30: %s", message.mti, _key(message), link.peer, where)
        if span is not None:
            invalid_request(span, where)
        return _fail_reply(message, ResponseCode.FORMAT_ERROR)

    def _denied(self, link: Link, acquirer_id: str | None) -> str | None:
        """Why the connection's certificate may not act as `acquirer_id` (None: it may, or plaintext)."""
        if not link.tls:
            return None  # plaintext: no identity, as on the gRPC port
        return self._access.check_certificate(link.certificate, acquirer_id)

    def _security_violation(self, link: Link, message: Message, reason: str) -> Message:
        log.warning("%s %s from %s answered 63: %s", message.mti, _key(message), link.peer, reason)
        return _fail_reply(message, SECURITY_VIOLATION)

    async def _authorize(self, link: Link, message: Message) -> Message:
        started = self._clock()
        span = self._spans.start(None) if self._spans is not None else None
        token = otel_context.attach(set_span_in_context(span)) if span is not None else None
        try:
            return await self._decide(link, message, span, started)
        finally:
            if token is not None and span is not None:
                otel_context.detach(token)
                span.end()

    async def _decide(self, link: Link, message: Message, span: Span | None, started: float) -> Message:
        if span is not None and span.is_recording():
            span.set_attributes({"authgw.edge": "iso8583", "authgw.iso8583.mti": message.mti})
        try:
            request = to_authorize_request(message, self._now())
            validate(request, self._limits)
        except (MappingError, InvalidRequest, FormatError) as exc:
            return self._refused(link, message, exc, span)
        denied = self._denied(link, request.acquirer_id)
        if denied is not None:
            return self._security_violation(link, message, denied)
        try:
            response = await self._authorizer.decide(request, None)
        except RequestRefused:
            if self._metrics is not None:
                self._metrics.record_refusal("reused_request_id")
            return _fail_reply(message, ResponseCode.DUPLICATE_TRANSMISSION)
        if self._metrics is not None:
            self._metrics.record_decision(response, self._clock() - started)
        if span is not None:
            annotate_decision(span, request, response)
        return authorization_reply(message, response)

    async def _reverse(self, link: Link, message: Message) -> Message:
        try:
            request = to_reverse_request(message, self._now())
            validate_reversal(request, self._limits)
        except (MappingError, InvalidRequest, FormatError) as exc:
            return self._refused(link, message, exc)
        denied = self._denied(link, request.acquirer_id)
        if denied is not None:
            return self._security_violation(link, message, denied)
        try:
            response = await self._reversals.reverse(request, None)
        except ReversalUnavailable as exc:
            log.warning("%s %s from %s answered 91: %s", message.mti, _key(message), link.peer, exc)
            return _fail_reply(message, ResponseCode.ISSUER_UNAVAILABLE)
        if self._metrics is not None:
            self._metrics.record_reversal(response)
        return reversal_reply(message, response)

    async def _acquirer_advice(self, link: Link, message: Message) -> Message:
        try:
            advice = to_acquirer_advice(message, self._now())
            validate(advice.request, self._limits)
        except (MappingError, InvalidRequest, FormatError) as exc:
            return self._refused(link, message, exc)
        denied = self._denied(link, advice.request.acquirer_id)
        if denied is not None:
            return self._security_violation(link, message, denied)
        try:
            ack = await self._advise(advice)
        except RequestRefused:
            if self._metrics is not None:
                self._metrics.record_refusal("reused_request_id")
            return _fail_reply(message, ResponseCode.DUPLICATE_TRANSMISSION)
        except AdviceUnavailable as exc:
            log.warning("%s %s from %s answered 96: %s", message.mti, _key(message), link.peer, exc)
            return _fail_reply(message, ResponseCode.SYSTEM_MALFUNCTION)
        return advice_reply(message, ack)

    def _network(self, link: Link, message: Message) -> Message:
        denied = self._denied(link, None)
        if denied is not None:
            return self._security_violation(link, message, denied)
        code = message.text(70)
        if code == NetworkCode.SIGN_ON:
            link.signed_on = True
            log.info("%s signed on", link.peer)
        elif code == NetworkCode.SIGN_OFF:
            link.signed_on = False
            log.info("%s signed off", link.peer)
        return build_reply(message, ResponseCode.APPROVED)


def _key(message: Message) -> str:
    """The message's match key for a log line (never a field's content beyond the keys)."""
    keys = message.keys()
    return "/".join(keys[n] for n in (11, 37, 7) if n in keys)
