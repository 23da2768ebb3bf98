"""The ISO 8583 acquirer listener: long-lived connections, many requests in flight on each (jPOS QMUX's peer).

What it promises (the wire layer's `ServerConnection` does the per-connection work):

- Each connection is served on its own: requests are handled concurrently (up to
  `max_in_flight`, then reading waits) and each reply is written as soon as it is ready, so
  replies come back in any order, matched by the acquirer's keys (11 + 37; 11 + 7 for 0800).
- Mutual TLS by default (the [tls] certificate and acquirers' CA, or the section's own), the
  certificate reloaded from disk for new connections; plaintext only with `insecure = true`,
  warned at start and every minute. A handshake that does not finish within its timeout is
  dropped.
- A frame that does not decode is answered 30 when its MTI and keys can be read, otherwise
  logged and counted; the connection stays up. A length header above `max_frame_bytes`, a frame
  cut short or slower than its body timeout, closes that connection only. A peer silent for
  `idle_timeout` with nothing in flight is closed; one that reads none of our replies within
  `write_timeout` too. Past `max_connections`, a new connection is closed at once.

Lifecycle: `start()` binds (ListenError when it cannot); `close(drain_s)` stops accepting, stops
reading every connection, lets what is in flight be answered within `drain_s`, then cancels the
rest. Safe to call twice.
"""

from __future__ import annotations

import asyncio
import logging

from authgw.iso8583 import Channel, ServerConnection, Spec
from authgw.security import PlaintextWarning, load_tls_files
from authgw.security.server_ssl import ReloadingServerSsl, peer_certificate_pem
from gateway.config_iso8583 import Iso8583ListenConfig
from gateway.edges.iso8583_acquirer import AcquirerHandler, Link
from gateway.edges.iso8583_metrics import Iso8583Counters
from gateway.errors import ListenError

__all__ = ["Iso8583Listener"]

log = logging.getLogger("authgw.iso8583.listener")


class Iso8583Listener:
    """Accepts acquirer connections and serves each with a ServerConnection."""

    def __init__(
        self,
        cfg: Iso8583ListenConfig,
        handler: AcquirerHandler,
        counters: Iso8583Counters,
        *,
        share_port: bool = False,
    ) -> None:
        """Reads the TLS files now: a bad file stops the gateway's start, naming it."""
        self._cfg = cfg
        self._handler = handler
        self._counters = counters
        self._share_port = share_port
        self._spec = Spec(cfg.bitmap)
        tls = cfg.security.tls
        self._ssl = ReloadingServerSsl(load_tls_files(tls)) if tls is not None else None
        self._warning = PlaintextWarning(
            cfg.security, f"ISO 8583 listener {cfg.listen} (acquirers -> gateway)"
        )
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], ServerConnection] = {}
        self.port = 0

    async def start(self) -> None:
        """Bind and accept; raises ListenError when the address cannot be bound."""
        host, _, port = self._cfg.listen.rpartition(":")
        await self._warning.start()
        if self._ssl is not None:
            await self._ssl.start()
        try:
            self._server = await asyncio.start_server(
                self._accepted,
                host.strip("[]"),
                int(port),
                ssl=self._ssl.context if self._ssl is not None else None,
                ssl_handshake_timeout=self._cfg.handshake_timeout_s if self._ssl is not None else None,
                reuse_port=self._share_port,  # `authgw serve --workers N` only, as the gRPC port
            )
        except OSError as exc:
            raise ListenError(
                f"cannot listen for ISO 8583 on {self._cfg.listen}: {exc.strerror or exc}"
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        tls = "mutual TLS" if self._ssl is not None else "PLAINTEXT"
        log.info("ISO 8583 listener on %s (%s, %s)", self._cfg.listen, tls, self._cfg.framing)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        channel = Channel(reader, writer, self._cfg.framing, write_timeout_s=self._cfg.write_timeout_s)
        if len(self._connections) >= self._cfg.max_connections or self._server is None:
            log.warning(
                "ISO 8583 connection from %s closed: %d connections open",
                channel.peer,
                len(self._connections),
            )
            self._counters.refused["max_connections"] += 1
            await channel.wait_closed()
            return
        certificate = peer_certificate_pem(writer.get_extra_info("ssl_object"))
        link = Link(channel.peer, certificate, tls=self._ssl is not None)
        connection = ServerConnection(
            channel,
            self._spec,
            self._handler.for_link(link),
            on_format_error=self._handler.on_format_error,
            idle_timeout_s=self._cfg.idle_timeout_s,
            max_in_flight=self._cfg.max_in_flight,
        )
        self._connections[task] = connection
        self._counters.connections += 1
        log.info("ISO 8583 connection from %s", channel.peer)
        try:
            await connection.serve()
        finally:
            del self._connections[task]
            self._counters.connections -= 1
            log.info("ISO 8583 connection from %s closed", channel.peer)

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return len(self._connections)

    async def close(self, drain_s: float) -> None:
        """Stop accepting and reading; answer what is in flight within `drain_s`; then cancel."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for connection in list(self._connections.values()):
            connection.close()  # stops reading; requests already read are still answered
        tasks = list(self._connections)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=drain_s)
            for task in stuck:
                task.cancel()
            if stuck:
                log.warning("ISO 8583: %d connections still busy after %s s: cancelled", len(stuck), drain_s)
                await asyncio.wait(stuck)
        if server is not None:
            await server.wait_closed()
        if self._ssl is not None:
            await self._ssl.close()
        await self._warning.close()
