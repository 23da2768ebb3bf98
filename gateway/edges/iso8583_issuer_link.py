"""Persistent ISO 8583 connections to one issuer host (jPOS's MUXPool of QMUX channels).

What it promises:

- `connections` connections, each a `Mux` (many requests in flight, replies matched by
  response MTI + STAN + RRN), opened at start and kept open: one that closes is reopened
  with exponential backoff (`backoff_initial_s` doubling up to `backoff_max_s`, back to the
  start once a connection has stayed up), under mutual TLS with the `[issuer_tls]` client
  certificate and the pool's server name, or plaintext by explicit choice.
- An idle connection is probed with 0800/301 (`echo`); one whose echo goes unanswered is
  closed and `on_failed` is called: the member counts as failed (gateway/member.py ejects it)
  and the connection is reopened.
- `request()` sends on the open connection with the fewest requests in flight. With none
  open it waits (within its timeout) for the first attempt to connect, as a gRPC call waits
  for its channel at start; afterwards (host down, reconnecting) it fails at once. Either
  way nothing was sent: ConnectionClosed(request_sent=False) ("failed to connect").
- STANs come from one sequence per host (`stans`), shared with the echoes.

Lifecycle: `start()` (needs a running loop; idempotent), `close()` (idempotent: stops
reconnecting, closes every connection, fails what is pending), `reconnect()` (closes every
connection so the next ones use the current TLS material: a rotated certificate).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from authgw.iso8583 import (
    APPROVED,
    BitmapEncoding,
    ConnectionClosed,
    EchoConfig,
    Framing,
    Iso8583Error,
    Message,
    Mux,
    NetworkCode,
    Spec,
    StanSequence,
    network_request,
    open_channel,
)
from authgw.tasks import cancel_and_wait

__all__ = ["IssuerLink", "LinkSettings"]

log = logging.getLogger("authgw.iso8583.issuer")


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """How the gateway talks ISO 8583 to the hosts of one pool."""

    connections: int = 2  # persistent connections per host
    connect_timeout_s: float = 1.0
    echo: EchoConfig = field(default_factory=lambda: EchoConfig(idle_s=5.0, timeout_s=2.0))
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 2.0
    financial: bool = False  # single-message host: 0200 / 0220 instead of 0100 / 0120
    framing: Framing = field(default_factory=Framing)
    bitmap: BitmapEncoding = BitmapEncoding.ASCII_HEX
    server_name: str = ""  # the name the host's certificate must carry ("": the host dialled)


SslContext = Callable[[], ssl.SSLContext | None]
"""The client TLS context to open the next connection with (None: plaintext); follows rotations."""


class IssuerLink:
    """The connections to one ISO 8583 issuer host (see the module docstring)."""

    def __init__(
        self,
        address: str,
        settings: LinkSettings,
        ssl_context: SslContext = lambda: None,
        *,
        on_failed: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self.settings = settings
        self.spec = Spec(settings.bitmap)
        self.stans = StanSequence()
        self.on_failed = on_failed
        self._host, self._port = host.strip("[]"), int(port)
        self._ssl_context = ssl_context
        self._muxes: list[Mux | None] = [None] * settings.connections
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._tried = asyncio.Event()  # a first attempt to connect has ended (either way)

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return sum(1 for m in self._muxes if m is not None)

    def start(self) -> None:
        """Open the connections in the background (once; no-op after close)."""
        if self._tasks or self._closed:
            return
        self._tasks = [
            asyncio.create_task(self._keep(i), name=f"iso8583-issuer-{self.address}-{i}")
            for i in range(self.settings.connections)
        ]

    async def request(self, message: Message, timeout_s: float) -> Message:
        """Send on the least busy open connection; see Mux.request for what it raises."""
        self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if not self._tried.is_set():  # the connections are being opened: wait for the first
            try:
                async with asyncio.timeout(timeout_s):
                    await self._tried.wait()
            except TimeoutError:
                pass
        open_muxes = [m for m in self._muxes if m is not None]
        if not open_muxes:
            raise ConnectionClosed(f"failed to connect to {self.address}: no connection open")
        mux = min(open_muxes, key=lambda m: m.in_flight)
        return await mux.request(message, max(0.0, deadline - loop.time()))

    async def echo(self, timeout_s: float) -> bool:
        """Whether the host answers an 0800/301 echo with 00 within `timeout_s` (never raises for it)."""
        probe = network_request(NetworkCode.ECHO, self.stans.next(), datetime.now(UTC))
        try:
            reply = await self.request(probe, timeout_s)
        except Iso8583Error:
            return False
        return reply.fields.get(39) == APPROVED

    async def reconnect(self) -> None:
        """Close every connection; each is reopened (with the current TLS material) by its keeper."""
        for mux in [m for m in self._muxes if m is not None]:
            await mux.close()

    async def close(self) -> None:
        """Stop reconnecting and close every connection; safe to call twice."""
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)

    async def _keep(self, index: int) -> None:
        """Keep connection `index` open for the life of the link."""
        delay = self.settings.backoff_initial_s
        while not self._closed:
            mux = await self._open()
            self._tried.set()
            if mux is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.backoff_max_s)
                continue
            delay = self.settings.backoff_initial_s
            self._muxes[index] = mux
            try:
                await mux.wait_closed()
            except asyncio.CancelledError:  # close(): this connection goes too
                await mux.close()
                raise
            finally:
                self._muxes[index] = None
            self._closed_by_peer(mux)

    def _closed_by_peer(self, mux: Mux) -> None:
        reason = mux.close_reason.reason if mux.close_reason is not None else "closed"
        if mux.echo_failed:
            log.warning("issuer host %s: %s; member failed, reconnecting", self.address, reason)
            self.on_failed(reason)
        elif not self._closed:
            log.info("issuer host %s: connection closed (%s), reconnecting", self.address, reason)

    async def _open(self) -> Mux | None:
        settings = self.settings
        try:
            channel = await open_channel(
                self._host,
                self._port,
                settings.framing,
                connect_timeout_s=settings.connect_timeout_s,
                ssl=self._ssl_context(),
                server_hostname=settings.server_name or None,
            )
        except ConnectionClosed as exc:
            log.debug("issuer host %s: %s", self.address, exc)
            return None
        mux = Mux(channel, self.spec, echo=settings.echo, stans=self.stans)
        await mux.start()
        return mux
