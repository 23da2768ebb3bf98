"""One framed connection (jPOS's channel): frames in, frames out one at a time, socket errors translated.

A Channel knows framing only; message format (`Spec`, `Message`) and request matching
(`Mux`, `ServerConnection`) sit on top of it. Reading is for one task at a time (the
owner's read loop); writing is for any number of tasks, serialised by one lock so frames
never interleave.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module

from authgw.iso8583.errors import ConnectionClosed
from authgw.iso8583.framing import Frame, Framing, read_frame, write_frame

__all__ = ["Channel", "open_channel"]


class Channel:
    """A framed ISO 8583 connection over asyncio streams.

    Args:
        write_timeout_s: a peer that takes no data for this long is gone; the channel closes.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framing: Framing,
        *,
        write_timeout_s: float = 5.0,
    ) -> None:
        self.framing = framing
        self._reader = reader
        self._writer = writer
        self._write_timeout_s = write_timeout_s
        self._write_lock = asyncio.Lock()
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    @property
    def closing(self) -> bool:
        """Whether the connection is closed or closing."""
        return self._writer.is_closing()

    async def read(self, *, idle_timeout_s: float | None = None) -> Frame:
        """The next frame (see `read_frame`); for the owner's read loop only."""
        return await read_frame(self._reader, self.framing, idle_timeout_s=idle_timeout_s)

    async def write(self, frame: Frame) -> None:
        """Write one frame after any frame already being written; closes the channel if it fails."""
        async with self._write_lock:
            if self._writer.is_closing():
                raise ConnectionClosed(f"connection to {self.peer} is closed", request_sent=False)
            try:
                await write_frame(self._writer, self.framing, frame, timeout_s=self._write_timeout_s)
            except ConnectionClosed:
                self.close()
                raise

    def close(self) -> None:
        """Close the connection (idempotent); a pending `read` ends with ConnectionClosed."""
        self._writer.close()

    async def wait_closed(self) -> None:
        """Close, and wait (within the write timeout) until the transport is gone."""
        self.close()
        try:
            async with asyncio.timeout(self._write_timeout_s):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # the connection is gone either way; how it ended is not this caller's concern


async def open_channel(
    host: str,
    port: int,
    framing: Framing,
    *,
    connect_timeout_s: float,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    write_timeout_s: float = 5.0,
) -> Channel:
    """Connect (TLS when `ssl` is given); ConnectionClosed with `request_sent=False` when it fails.

    Args:
        server_hostname: under TLS, the name the server's certificate must carry (default: `host`).
    """
    name = server_hostname if ssl is not None else None
    try:
        async with asyncio.timeout(connect_timeout_s):
            reader, writer = await asyncio.open_connection(host, port, ssl=ssl, server_hostname=name)
    except TimeoutError:
        raise ConnectionClosed(f"connect to {host}:{port}: no answer within {connect_timeout_s} s") from None
    except OSError as exc:
        raise ConnectionClosed(f"connect to {host}:{port}: {exc.strerror or exc}") from exc
    return Channel(reader, writer, framing, write_timeout_s=write_timeout_s)
