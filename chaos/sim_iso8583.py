"""The issuer simulator's ISO 8583 port: the same host (books, accounts, faults) as its gRPC servicer.

Each message is mapped to the contract with the issuer-link mapping
(gateway/edges/iso8583_issuer_mapping.py, the gateway's own) and handed to the very
`IssuerHostServicer` the gRPC port serves; its answer is mapped back:

    0100 / 0200                 Authorize  -> 0110 / 0210 (39, 38, 48 decision id)
    0120 / 0121 / 0220 / 0221   Advise     -> 0130 / 0230 (00; 48 DU=1 for a duplicate)
    0400 / 0420 / 0421          Reverse    -> 0410 / 0430 (00; 48 the reversal's status)
    0800                        echo, sign-on, sign-off -> 0810 (00); hangs while the host hangs

Where the servicer aborts a gRPC call, the reply carries field 39:

    UNAVAILABLE (injected error, ledger down)   96 system malfunction
    ALREADY_EXISTS (request id, other content)  94 duplicate transmission
    INVALID_ARGUMENT, a message the contract cannot carry   30 format error
    FAILED_PRECONDITION (advice rejected)       06 error (a refusal: settlement retries, then dead-letters)

Mutual TLS with the simulator's certificate when it has one, like its gRPC port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from datetime import UTC, datetime
from typing import Any, cast

import grpc

from authgw.iso8583 import Channel, Framing, Message, ServerConnection, Spec, build_reply
from authgw.security import TlsFiles
from authgw.security.server_ssl import server_ssl_context
from chaos.sim_faults import FaultGate
from chaos.sim_servicers import IssuerHostServicer
from gateway.edges.iso8583_issuer_mapping import (
    host_advice,
    host_advice_reply,
    host_authorization_reply,
    host_authorize_request,
    host_reversal_reply,
    host_reverse_request,
)
from gateway.edges.iso8583_mapping import MappingError

__all__ = ["IsoHost"]

log = logging.getLogger("authgw.issuer_sim")

_ABORT_CODES = {
    grpc.StatusCode.UNAVAILABLE: "96",
    grpc.StatusCode.ALREADY_EXISTS: "94",
    grpc.StatusCode.INVALID_ARGUMENT: "30",
    grpc.StatusCode.FAILED_PRECONDITION: "06",
}
_AUTHORIZATIONS = frozenset({"0100", "0200"})
_ADVICES = frozenset({"0120", "0121", "0220", "0221"})
_REVERSALS = frozenset({"0400", "0420", "0421"})


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        super().__init__(details)


class _IsoContext:
    """What the servicer uses of a gRPC context: `abort`, which here raises for the mapping below."""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise _Aborted(code, details)


class IsoHost:
    """Serves the ISO 8583 port of one simulated host."""

    def __init__(
        self, listen: str, servicer: IssuerHostServicer, gate: FaultGate, *, tls: TlsFiles | None = None
    ) -> None:
        self._listen = listen
        self._servicer = servicer
        self._gate = gate
        self._ssl: ssl.SSLContext | None = server_ssl_context(tls) if tls is not None else None
        self._spec = Spec()
        self._framing = Framing()
        self._context = cast(Any, _IsoContext())
        self._server: asyncio.Server | None = None
        self._connections: set[ServerConnection] = set()
        self.port = 0

    async def start(self) -> None:
        """Bind and accept; OSError when the address cannot be bound."""
        host, _, port = self._listen.rpartition(":")
        self._server = await asyncio.start_server(self._accepted, host, int(port), ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("ISO 8583 port %d (%s)", self.port, "mutual TLS" if self._ssl else "PLAINTEXT")

    async def close(self) -> None:
        """Stop accepting and close every connection; safe twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            connection.close()
        with contextlib.suppress(TimeoutError):  # a hung host's handlers never finish: do not wait on them
            await asyncio.wait_for(server.wait_closed(), 2.0)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = Channel(reader, writer, self._framing)
        connection = ServerConnection(channel, self._spec, self.handle, idle_timeout_s=600.0)
        self._connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)

    async def handle(self, message: Message) -> Message | None:
        """The reply to one request, as the gRPC servicer decides it."""
        try:
            return await self._answer(message)
        except MappingError as exc:
            log.warning("%s answered 30: %s", message.mti, exc)
            return build_reply(message, "30")
        except _Aborted as exc:
            return build_reply(message, _ABORT_CODES.get(exc.code, "96"))

    async def _answer(self, message: Message) -> Message | None:
        mti, now, servicer = message.mti, datetime.now(UTC), self._servicer
        if mti in _AUTHORIZATIONS:
            response = await servicer.Authorize(host_authorize_request(message, now), self._context)
            return host_authorization_reply(message, response)
        if mti in _ADVICES:
            ack = await servicer.Advise(host_advice(message, now), self._context)
            return host_advice_reply(message, ack)
        if mti in _REVERSALS:
            reversal = await servicer.Reverse(host_reverse_request(message, now), self._context)
            return host_reversal_reply(message, reversal)
        if mti == "0800":
            await self._gate.wait_released()  # a hung host answers no echo either
            return build_reply(message, "00")
        return build_reply(message, "30")
