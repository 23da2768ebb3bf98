"""The load generator's ISO 8583 transport: the acquirer's calls as 0100 / 0400 / 0420 / 0120 on the gateways'
ISO 8583 listeners.

`chaos.acquirer.Acquirer` drives the same flow whichever transport carries it; this one gives it
stubs with the gRPC stubs' three calls (Authorize, Reverse, Advise) that speak ISO 8583 over one
persistent mutual-TLS connection per (acquirer, gateway), many requests in flight, replies matched
by the reply's keys (`authgw.iso8583.Mux`, jPOS QMUX's equivalent).

Request ids. ISO 8583 has none: the gateway derives `<32>:<11>:<7>` (`iso_request_id`). The
transport names every request and reversal that way when it is made (`new_id`: the acquirer's own
STAN sequence, field 7 the time it was made), so the samples, the issuer's books and the oracle
(`chaos.verify`) use the gateway's ids; a repeat carries the same 11 and 7, hence the same id.

Messages are built with the gateway's own issuer-side mapping (`iso8583_issuer_mapping`: the same
field rules), then given the acquirer's 7, 11 and 90, without the gateway-private 48. Timeout
reversals go as 0420, repeated as 0421 until answered; reversals of approvals as 0400 (repeated
as 0400: same 11 and 7, the same reversal). Acquirer advices as 0120 (39 00 and 38 for a forced
post, Y1 for an offline approval), repeated as 0121.

Replies become what a gRPC call would give: 0110 -> AuthorizeResponse (source unknown: the wire
does not say whether stand-in answered), 30 / 63 / 94 -> the refusal gRPC gives for the same cause
(INVALID_ARGUMENT / PERMISSION_DENIED / ALREADY_EXISTS), a reversal's 91 or an advice's 96 (not
recorded) and a lost connection -> UNAVAILABLE, no reply in time -> DEADLINE_EXCEEDED, raised as
`IsoCallError` (a grpc.aio.AioRpcError). An authorization's 91 or 96 is a decline, an answer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import grpc
import grpc.aio

from authgw.iso8583 import (
    Framing,
    Iso8583Error,
    MatchTimeout,
    Message,
    Mux,
    OriginalData,
    Spec,
    StanSequence,
    open_channel,
    transmission_time,
)
from authgw.v1 import authorization_pb2 as pb
from gateway.edges.iso8583_issuer_mapping import (
    authorization_answer,
    authorization_message,
    reversal_answer,
    reversal_message,
)
from gateway.edges.iso8583_mapping import iso_request_id
from gateway.edges.iso8583_private import PRIVATE_FIELD

__all__ = [
    "IsoCallError",
    "IsoGatewayStubs",
    "IsoStub",
    "TlsFor",
    "acquirer_advice",
    "acquirer_authorization",
    "acquirer_reversal",
]

TlsFor = Callable[[str], ssl.SSLContext]
"""acquirer_id -> the TLS context that acquirer connects with (its certificate, the gateways' CA)."""

_REFUSED = {
    "30": grpc.StatusCode.INVALID_ARGUMENT,
    "63": grpc.StatusCode.PERMISSION_DENIED,
    "94": grpc.StatusCode.ALREADY_EXISTS,
}
_UNAVAILABLE = frozenset({"91", "96"})  # a reversal or advice not recorded (repeat it)
_AUTHORIZATIONS = frozenset({"0100", "0200"})
_ADVICE_CODES = {pb.FORCED_POST: "00", pb.OFFLINE_APPROVED: "Y1"}
_CONNECT_TIMEOUT_S = 2.0


class IsoCallError(grpc.aio.AioRpcError):
    """An ISO 8583 exchange that gave no answer, or a refusal, as the gRPC status it stands for."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def _keys(request_id: str) -> tuple[str, str]:
    """(11, 7) of an id made by `IsoGatewayStubs.new_id`."""
    _, stan, transmitted = request_id.split(":")
    return stan, transmitted


def _acquirer_fields(message: Message, request_id: str) -> Message:
    stan, transmitted = _keys(request_id)
    return message.with_fields({7: transmitted, 11: stan, PRIVATE_FIELD: None})


def acquirer_authorization(request: pb.AuthorizeRequest, mti: str = "0100") -> Message:
    """The 0100 (or 0200) an acquirer sends for `request` (its id made by `IsoGatewayStubs.new_id`)."""
    stan, _ = _keys(request.request_id)
    message = authorization_message(request, mti=mti, stan=stan, now=datetime.now(UTC))
    return _acquirer_fields(message, request.request_id)


def acquirer_reversal(request: pb.ReverseRequest, mti: str) -> Message:
    """The 0400 / 0420 / 0421 reversing `request.original_request_id`: 90 rebuilds that id."""
    stan, _ = _keys(request.reversal_id)
    message = reversal_message(request, mti=mti, stan=stan, now=datetime.now(UTC))
    original_stan, original_sent = _keys(request.original_request_id)
    original = OriginalData("0100", original_stan, original_sent, request.acquirer_id)
    return _acquirer_fields(message.with_fields({90: original.encode()}), request.reversal_id)


def acquirer_advice(advice: pb.AcquirerAdvice, mti: str) -> Message:
    """The 0120 / 0121: the authorization's fields, then 39 (and 38) of the approval given."""
    request = advice.request
    fields = dict(acquirer_authorization(request).fields)
    fields[39] = _ADVICE_CODES[advice.kind]
    if advice.kind == pb.FORCED_POST:
        fields[38] = advice.approval_code
    return Message(mti, fields)


class IsoStub:
    """One acquirer's link to one gateway: the gRPC stub's calls, in ISO 8583."""

    def __init__(self, address: str, spec: Spec, tls: ssl.SSLContext | None, repeats: set[str]) -> None:
        self._host, _, port = address.rpartition(":")
        self._port = int(port)
        self._spec = spec
        self._tls = tls
        self._repeats = repeats  # ids already sent once by this acquirer (next time: 0421 / 0121)
        self._mux: Mux | None = None
        self._connecting = asyncio.Lock()

    async def _link(self) -> Mux:
        async with self._connecting:
            if self._mux is None or self._mux.close_reason is not None:
                name = "localhost" if self._tls is not None else None
                channel = await open_channel(
                    self._host, self._port, Framing(), connect_timeout_s=_CONNECT_TIMEOUT_S,
                    ssl=self._tls, server_hostname=name,
                )  # fmt: skip
                self._mux = Mux(channel, self._spec)
                await self._mux.start()
            return self._mux

    async def _exchange(self, message: Message, timeout_s: float) -> Message:
        try:
            async with asyncio.timeout(timeout_s):
                mux = await self._link()
                reply = await mux.request(message, timeout_s)
        except (TimeoutError, MatchTimeout):
            raise IsoCallError(grpc.StatusCode.DEADLINE_EXCEEDED, f"{message.mti}: no reply") from None
        except Iso8583Error as exc:
            raise IsoCallError(grpc.StatusCode.UNAVAILABLE, f"{message.mti}: {exc}") from None
        code = reply.text(39)
        if code in _REFUSED:
            raise IsoCallError(_REFUSED[code], f"{reply.mti} answered {code}")
        if code in _UNAVAILABLE and message.mti not in _AUTHORIZATIONS:  # nothing recorded: repeat it
            raise IsoCallError(grpc.StatusCode.UNAVAILABLE, f"{reply.mti} answered {code}")
        return reply  # an authorization's 91 or 96 is a decline like any other

    def _mti(self, first: str, repeat: str, request_id: str) -> str:
        if request_id in self._repeats:
            return repeat
        self._repeats.add(request_id)
        return first

    async def Authorize(self, request: pb.AuthorizeRequest, timeout: float) -> pb.AuthorizeResponse:  # noqa: ASYNC109  # the gRPC stub's signature
        reply = await self._exchange(acquirer_authorization(request), timeout)
        response = authorization_answer(reply, request)
        response.source = pb.SOURCE_UNSPECIFIED  # an ISO 8583 reply does not say who decided
        return response

    async def Reverse(self, request: pb.ReverseRequest, timeout: float) -> pb.ReverseResponse:  # noqa: ASYNC109  # the gRPC stub's signature
        if request.reason == pb.TERMINAL_TIMEOUT:
            mti = self._mti("0420", "0421", request.reversal_id)
        else:
            mti = "0400"
        reply = await self._exchange(acquirer_reversal(request, mti), timeout)
        response = reversal_answer(reply, request)
        response.source = pb.SOURCE_UNSPECIFIED
        return response

    async def Advise(self, advice: pb.AcquirerAdvice, timeout: float) -> pb.AdviceAck:  # noqa: ASYNC109  # the gRPC stub's signature
        request = advice.request
        mti = self._mti("0120", "0121", request.request_id)
        await self._exchange(acquirer_advice(advice, mti), timeout)
        return pb.AdviceAck()

    async def close(self) -> None:
        if self._mux is not None:
            await self._mux.close()


class IsoGatewayStubs:
    """ISO 8583 stubs per acquirer, one per gateway listener, connected at first use; ids per acquirer."""

    def __init__(self, targets: Sequence[str], tls: TlsFor | None) -> None:
        """Args:
        targets: the gateways' ISO 8583 listeners (host:port), in fleet order.
        tls: what each acquirer connects with; None: plaintext listeners (`insecure = true`).
        """
        if not targets:
            raise ValueError("at least one gateway target is needed")
        self._targets = list(targets)
        self._tls = tls
        self._spec = Spec()
        self._stubs: dict[str, list[IsoStub]] = {}
        self._stans: dict[str, StanSequence] = {}
        self._repeats: set[str] = set()

    def __len__(self) -> int:
        return len(self._targets)

    def of(self, acquirer_id: str) -> list[IsoStub]:
        stubs = self._stubs.get(acquirer_id)
        if stubs is None:
            tls = self._tls(acquirer_id) if self._tls is not None else None
            stubs = [IsoStub(t, self._spec, tls, self._repeats) for t in self._targets]
            self._stubs[acquirer_id] = stubs
        return stubs

    def new_id(self, acquirer_id: str, proposed: str) -> str:
        """The gateway's id for the next message of `acquirer_id`: 32 + its next STAN + 7 now."""
        del proposed  # ISO 8583 has no room for the acquirer's own id
        stans = self._stans.setdefault(acquirer_id, StanSequence())
        return iso_request_id(acquirer_id, stans.next(), transmission_time(datetime.now(UTC)))

    async def close(self) -> None:
        stubs = [s for group in self._stubs.values() for s in group]
        self._stubs.clear()
        for stub in stubs:
            await stub.close()
