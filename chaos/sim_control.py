"""Async client of an issuer simulator's control service (authgw.v1.IssuerSimControl).

    async with SimControl("127.0.0.1:50051") as sim:
        await sim.set_faults(hang=True)
        report = await sim.report()
        books = await sim.books()   # every request book of the ledger, and the postings check

Every call has a deadline; gRPC errors reach the caller as `grpc.aio.AioRpcError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from authgw.security import TlsFiles, channel_credentials, load_tls_files
from authgw.v1 import simulator_pb2

__all__ = ["LedgerBooks", "SimControl"]

_SERVICE = "/authgw.v1.IssuerSimControl"
# A Report lists every approved request_id: after a long benchmark it outgrows gRPC's 4 MiB default.
_MAX_REPORT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LedgerBooks:
    """Every request book of one issuer ledger, and the postings none of them explains."""

    books: list[simulator_pb2.RequestBook]
    unexplained: simulator_pb2.UnexplainedPostings


class SimControl:
    """Control channel to one issuer simulator; close it (or use `async with`)."""

    def __init__(self, address: str, *, timeout_s: float = 5.0, tls: TlsFiles | None = None) -> None:
        """Args:
        tls: the harness's client certificate for a simulator serving mutual TLS (its CA
            checks the simulator's certificate); None: plaintext.
        """
        self.address = address
        self._timeout_s = timeout_s
        options = [("grpc.max_receive_message_length", _MAX_REPORT_BYTES)]
        self._channel: Any = (
            grpc.aio.insecure_channel(address, options=options)
            if tls is None
            else grpc.aio.secure_channel(address, channel_credentials(load_tls_files(tls)), options=options)
        )
        # Built from the channel rather than the generated stub, which carries no annotations.
        self._set_faults = self._channel.unary_unary(
            f"{_SERVICE}/SetFaults",
            request_serializer=simulator_pb2.SetFaultsRequest.SerializeToString,
            response_deserializer=simulator_pb2.Faults.FromString,
        )
        self._report = self._channel.unary_unary(
            f"{_SERVICE}/Report",
            request_serializer=simulator_pb2.ReportRequest.SerializeToString,
            response_deserializer=simulator_pb2.SimReport.FromString,
        )
        self._books = self._channel.unary_stream(
            f"{_SERVICE}/Books",
            request_serializer=simulator_pb2.BooksRequest.SerializeToString,
            response_deserializer=simulator_pb2.BookPage.FromString,
        )

    async def set_faults(
        self,
        *,
        latency_ms: int = 0,
        error_rate: float = 0.0,
        decline_code: str = "",
        hang: bool = False,
        advise_reject_rate: float = 0.0,
        send_balance: bool = False,
    ) -> simulator_pb2.Faults:
        """Replace every fault of the host (arguments left out are cleared); returns what it applied."""
        faults = simulator_pb2.Faults(
            latency_ms=latency_ms,
            error_rate=error_rate,
            decline_code=decline_code,
            hang=hang,
            advise_reject_rate=advise_reject_rate,
            send_balance=send_balance,
        )
        applied: simulator_pb2.Faults = await self._set_faults(
            simulator_pb2.SetFaultsRequest(faults=faults), timeout=self._timeout_s
        )
        return applied

    async def clear_faults(self) -> simulator_pb2.Faults:
        """Remove every fault."""
        return await self.set_faults()

    async def report(self) -> simulator_pb2.SimReport:
        """The host's counters, current faults and the ledger's advices."""
        report: simulator_pb2.SimReport = await self._report(
            simulator_pb2.ReportRequest(), timeout=self._timeout_s
        )
        return report

    async def books(self, *, timeout_s: float = 60.0, page_size: int = 0) -> LedgerBooks:
        """Every book of the host's ledger (all pages, within timeout_s for the whole stream)."""
        books: list[simulator_pb2.RequestBook] = []
        unexplained = simulator_pb2.UnexplainedPostings()
        async for page in self._books(simulator_pb2.BooksRequest(page_size=page_size), timeout=timeout_s):
            books.extend(page.books)
            if page.last:
                unexplained = page.unexplained
        return LedgerBooks(books, unexplained)

    async def close(self) -> None:
        """Close the channel; safe to call twice."""
        await self._channel.close()

    async def __aenter__(self) -> SimControl:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
