"""An ISO 8583 issuer host behind the interface of a gRPC `IssuerHostStub`: Authorize, Advise, Reverse.

The router (`gateway.attempt.run_attempt`) and the settlement sender call a member's stub as
they call grpc's: `stub.Authorize(request, timeout=..., metadata=...)` returns a call they can
await, cancel or add a done-callback to. Here that call is an asyncio Task that maps the
request to ISO 8583 (gateway/edges/iso8583_issuer_mapping.py), sends it on the member's
`IssuerLink` and maps the reply back, so routing, failover, attempt deadlines, late answers
and settlement work unchanged. This module is the one boundary where ISO 8583 failures
become the gRPC errors those callers classify:

    nothing sent (no connection open, connect failed)   UNAVAILABLE "failed to connect ..."  (not sent)
    connection lost after sending                       UNAVAILABLE "connection lost ..."    (unknown)
    no matching reply within the timeout                DEADLINE_EXCEEDED                    (unknown)
    the request cannot be carried in ISO 8583           INVALID_ARGUMENT (an advice: poison)
    a reply that breaks the format                      INTERNAL
    39 = 94 (duplicate transmission)                    ALREADY_EXISTS (a reused request id)
    39 = 30 (format error)                              INVALID_ARGUMENT
    advice or reversal: 39 = 91 / 96                    UNAVAILABLE (retried)
    advice or reversal: any other code but 00           FAILED_PRECONDITION (refused)

An authorization's other codes are the issuer's answer (91 / 96 the router counts as a system
decline). Advices go as 0120 (0220 to a single-message host) and reversals as 0420; once sent
by this process (to any host), the same decision or reversal goes as 0121 / 0221 / 0421.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from authgw.iso8583 import ConnectionClosed, FormatError, FramingError, MatchTimeout, Message, MuxError
from authgw.v1 import authorization_pb2 as pb
from gateway.edges.iso8583_issuer_link import IssuerLink, LinkSettings, SslContext
from gateway.edges.iso8583_issuer_mapping import (
    advice_answer,
    advice_message,
    authorization_answer,
    authorization_message,
    reversal_answer,
    reversal_message,
)
from gateway.edges.iso8583_mapping import MappingError

__all__ = ["IsoIssuerStub", "IsoLinks", "SentMessages"]

_T = TypeVar("_T")
_UNAVAILABLE_CODES = frozenset({"91", "96"})


class SentMessages:
    """Advices and reversals this process has sent at least once (by id): their next sending is a repeat."""

    def __init__(self, keep: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._keep = keep

    def first_time(self, key: str) -> bool:
        """True the first time `key` is seen (then remembered, up to `keep` keys)."""
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self._keep:
            self._ids.popitem(last=False)
        return True


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def _translated(exc: Exception, address: str) -> grpc.aio.AioRpcError:
    """An ISO 8583 failure as the gRPC error the router and the sender classify (module docstring)."""
    if isinstance(exc, ConnectionClosed):
        if exc.request_sent:
            return _rpc_error(grpc.StatusCode.UNAVAILABLE, f"connection lost to {address}: {exc.reason}")
        text = exc.reason if exc.reason.startswith("failed to connect") else f"failed to connect: {exc}"
        return _rpc_error(grpc.StatusCode.UNAVAILABLE, text)
    if isinstance(exc, MatchTimeout):
        return _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, f"{address}: {exc}")
    if isinstance(exc, MappingError | FramingError):
        return _rpc_error(grpc.StatusCode.INVALID_ARGUMENT, f"cannot send in ISO 8583: {exc}")
    return _rpc_error(grpc.StatusCode.INTERNAL, f"{address}: {exc}")


def _refusal(code: str, *, advice: bool) -> grpc.aio.AioRpcError | None:
    """The error a field 39 stands for, or None when it is an answer."""
    if code == "94":
        return _rpc_error(grpc.StatusCode.ALREADY_EXISTS, "39 = 94: duplicate transmission")
    if code == "30":
        return _rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "39 = 30: format error")
    if not advice or code == "00":
        return None
    if code in _UNAVAILABLE_CODES:
        return _rpc_error(grpc.StatusCode.UNAVAILABLE, f"39 = {code}: the host could not process it")
    return _rpc_error(grpc.StatusCode.FAILED_PRECONDITION, f"39 = {code}: refused by the host")


class IsoIssuerStub:
    """Authorize, Advise and Reverse of an ISO 8583 host (see the module docstring)."""

    def __init__(
        self,
        link: IssuerLink,
        sent: SentMessages,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._link = link
        self._sent = sent
        self._now = now
        self._financial = link.settings.financial

    def Authorize(  # the gRPC stub's method name
        self, request: pb.AuthorizeRequest, *, timeout: float, metadata: Any = None
    ) -> asyncio.Task[pb.AuthorizeResponse]:
        mti = "0200" if self._financial else "0100"

        def build(stan: str) -> Message:
            return authorization_message(request, mti=mti, stan=stan, now=self._now())

        async def answer(reply: Message) -> pb.AuthorizeResponse:
            return authorization_answer(reply, request)

        return asyncio.ensure_future(self._exchange(build, answer, timeout, advice=False))

    def Advise(
        self, advice: pb.StandInAdvice, *, timeout: float, metadata: Any = None
    ) -> asyncio.Task[pb.AdviceAck]:
        first = self._sent.first_time(f"advice:{advice.decision_id}")
        mti = ("0220" if self._financial else "0120") if first else ("0221" if self._financial else "0121")

        def build(stan: str) -> Message:
            return advice_message(advice, mti=mti, stan=stan, now=self._now())

        async def answer(reply: Message) -> pb.AdviceAck:
            return advice_answer(reply, advice)

        return asyncio.ensure_future(self._exchange(build, answer, timeout, advice=True))

    def Reverse(
        self, reversal: pb.ReverseRequest, *, timeout: float, metadata: Any = None
    ) -> asyncio.Task[pb.ReverseResponse]:
        first = self._sent.first_time(f"reversal:{reversal.acquirer_id}:{reversal.reversal_id}")
        mti = "0420" if first else "0421"

        def build(stan: str) -> Message:
            return reversal_message(reversal, mti=mti, stan=stan, now=self._now())

        async def answer(reply: Message) -> pb.ReverseResponse:
            return reversal_answer(reply, reversal)

        return asyncio.ensure_future(self._exchange(build, answer, timeout, advice=True))

    async def _exchange(
        self,
        build: Callable[[str], Message],
        answer: Callable[[Message], Awaitable[_T]],
        timeout_s: float,
        *,
        advice: bool,
    ) -> _T:
        link = self._link
        try:
            reply = await link.request(build(link.stans.next()), timeout_s)
            refused = _refusal(reply.text(39), advice=advice)
            if refused is not None:
                raise refused
            return await answer(reply)
        except (ConnectionClosed, MatchTimeout, MappingError, FramingError, FormatError, MuxError) as exc:
            raise _translated(exc, link.address) from None


class IsoLinks:
    """Opens the links of one pool's ISO 8583 members: the pool's settings, the current TLS context.

    Args:
        ssl_context: the client context for the next connection (None: plaintext); the
            transport swaps it when our certificate rotates.
        sent: shared by every pool of the process, so a repeat is a repeat whichever host gets it.
    """

    def __init__(
        self,
        settings: LinkSettings | None = None,
        ssl_context: SslContext = lambda: None,
        sent: SentMessages | None = None,
    ) -> None:
        self.settings = settings or LinkSettings()
        self._ssl_context = ssl_context
        self._sent = sent or SentMessages()

    def open(self, address: str, on_failed: Callable[[str], None]) -> tuple[IssuerLink, IsoIssuerStub]:
        """The link to one host (not started) and the stub over it."""
        link = IssuerLink(address, self.settings, self._ssl_context, on_failed=on_failed)
        return link, IsoIssuerStub(link, self._sent)
