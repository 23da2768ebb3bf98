"""Frames on a byte stream: a length header, an optional 5-byte TPDU, then one ISO 8583 message.

The length header counts every byte after itself (the TPDU included), never itself:

- `LengthHeader.BINARY2` (default): 2 bytes, unsigned big-endian (jPOS NACChannel, PostChannel).
- `LengthHeader.ASCII4`: 4 ASCII decimal digits (jPOS ASCIIChannel).

With `Framing.tpdu` each frame carries a TPDU after the header (NACChannel): an id byte
(0x60), a 2-byte destination address and a 2-byte source address; a reply carries the
request's TPDU with the two addresses swapped (`Tpdu.reply`).

A header of 0, above `max_frame_bytes`, or too short for the TPDU, a header that is not
digits, or a frame cut short is a FramingError: the stream is out of step and the caller
closes that connection (only that one). A clean end of stream between frames is
ConnectionClosed.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from authgw.iso8583.errors import ConfigError, ConnectionClosed, FramingError

__all__ = [
    "TPDU_SIZE",
    "Frame",
    "Framing",
    "LengthHeader",
    "Tpdu",
    "encode_frame",
    "read_frame",
    "write_frame",
]

TPDU_SIZE = 5


class LengthHeader(enum.StrEnum):
    """How the length of a frame is written in front of it."""

    BINARY2 = "binary2"  # 2 bytes, unsigned big-endian: 1 to 65535
    ASCII4 = "ascii4"  # 4 ASCII decimal digits: 1 to 9999

    @property
    def size(self) -> int:
        """Bytes the header itself takes."""
        return 2 if self is LengthHeader.BINARY2 else 4

    @property
    def largest(self) -> int:
        """The largest length the header can express."""
        return 0xFFFF if self is LengthHeader.BINARY2 else 9999


@dataclass(frozen=True, slots=True)
class Tpdu:
    """NACChannel's transport protocol data unit: id, destination and source address (NII)."""

    destination: int  # 2 bytes
    source: int  # 2 bytes
    id: int = 0x60  # 1 byte; 0x60 is the usual "transaction" TPDU

    def __post_init__(self) -> None:
        if not (0 <= self.id <= 0xFF and 0 <= self.destination <= 0xFFFF and 0 <= self.source <= 0xFFFF):
            raise ConfigError("tpdu", "id is 1 byte, addresses 2 bytes each", "use 0-255 and 0-65535")

    def to_bytes(self) -> bytes:
        """The 5 bytes on the wire."""
        return bytes([self.id]) + self.destination.to_bytes(2, "big") + self.source.to_bytes(2, "big")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Tpdu:
        """Read the 5 bytes of a TPDU."""
        if len(raw) != TPDU_SIZE:
            raise FramingError(f"a TPDU is {TPDU_SIZE} bytes, got {len(raw)}")
        return cls(int.from_bytes(raw[1:3], "big"), int.from_bytes(raw[3:5], "big"), raw[0])

    def reply(self) -> Tpdu:
        """The TPDU of the reply: destination and source swapped."""
        return Tpdu(self.source, self.destination, self.id)


@dataclass(frozen=True, slots=True)
class Framing:
    """How messages are framed on a connection (both ends must agree)."""

    header: LengthHeader = LengthHeader.BINARY2
    tpdu: bool = False  # frames carry a 5-byte TPDU after the length header
    max_frame_bytes: int = 4096  # largest length header accepted; above it, FramingError
    body_timeout_s: float = 5.0  # once a header is read, the rest of the frame must follow within this

    def __post_init__(self) -> None:
        smallest = TPDU_SIZE + 1 if self.tpdu else 1
        if not smallest <= self.max_frame_bytes <= self.header.largest:
            raise ConfigError(
                "max_frame_bytes",
                f"{self.max_frame_bytes} does not fit a {self.header} header",
                f"use {smallest} to {self.header.largest}",
            )
        if self.body_timeout_s <= 0:
            raise ConfigError("body_timeout_s", "must be positive", "use a few seconds, e.g. 5.0")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame's content: the message bytes and, on TPDU links, its TPDU."""

    payload: bytes
    tpdu: Tpdu | None = None

    def __repr__(self) -> str:
        # The payload holds card data: never let a log line print it.
        return f"Frame({len(self.payload)} bytes, tpdu={self.tpdu})"


def encode_frame(framing: Framing, frame: Frame) -> bytes:
    """Header, TPDU and payload as one bytes object, ready for one write."""
    if (frame.tpdu is not None) != framing.tpdu:
        expected = "needs a TPDU" if framing.tpdu else "carries no TPDU"
        raise FramingError(f"this link {expected}")
    body = frame.tpdu.to_bytes() + frame.payload if frame.tpdu is not None else frame.payload
    if not frame.payload or len(body) > framing.max_frame_bytes:
        raise FramingError(f"a frame of {len(body)} bytes is outside 1 to {framing.max_frame_bytes}")
    if framing.header is LengthHeader.BINARY2:
        header = len(body).to_bytes(2, "big")
    else:
        header = f"{len(body):04d}".encode("ascii")
    return header + body


def _parse_header(framing: Framing, header: bytes) -> int:
    if framing.header is LengthHeader.BINARY2:
        length = int.from_bytes(header, "big")
    elif header.isdigit():
        length = int(header)
    else:
        raise FramingError("length header is not 4 ASCII digits")
    smallest = TPDU_SIZE + 1 if framing.tpdu else 1
    if length < smallest:
        raise FramingError(f"length header {length} is below the smallest frame ({smallest} bytes)")
    if length > framing.max_frame_bytes:
        raise FramingError(f"length header {length} is above the maximum of {framing.max_frame_bytes}")
    return length


async def read_frame(
    reader: asyncio.StreamReader, framing: Framing, *, idle_timeout_s: float | None = None
) -> Frame:
    """Read the next frame.

    Args:
        idle_timeout_s: raise TimeoutError when no frame starts within it; the stream stays
            in step (nothing of the next frame is consumed), so the caller may read again.
    """
    try:
        async with asyncio.timeout(idle_timeout_s):
            header = await reader.readexactly(framing.header.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ConnectionClosed("the peer closed the connection") from None
        raise FramingError(f"short read: length header cut after {len(exc.partial)} bytes") from None
    except TimeoutError:
        raise  # idle: TimeoutError is an OSError, but not a lost connection
    except OSError as exc:
        raise ConnectionClosed(f"connection lost: {exc}") from exc
    length = _parse_header(framing, header)
    try:
        async with asyncio.timeout(framing.body_timeout_s):
            body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FramingError(f"short read: frame cut after {len(exc.partial)} of {length} bytes") from None
    except TimeoutError:
        raise FramingError(
            f"short read: frame of {length} bytes not complete after {framing.body_timeout_s} s"
        ) from None
    except OSError as exc:
        raise ConnectionClosed(f"connection lost mid-frame: {exc}") from exc
    if framing.tpdu:
        return Frame(body[TPDU_SIZE:], Tpdu.from_bytes(body[:TPDU_SIZE]))
    return Frame(body)


async def write_frame(
    writer: asyncio.StreamWriter, framing: Framing, frame: Frame, *, timeout_s: float
) -> None:
    """Write one frame; ConnectionClosed when the peer has not taken it within `timeout_s`."""
    data = encode_frame(framing, frame)
    try:
        # One write() puts the whole frame in the transport: a cancelled drain never splits a frame.
        writer.write(data)
        async with asyncio.timeout(timeout_s):
            await writer.drain()
    except TimeoutError:
        raise ConnectionClosed(f"the peer took no data for {timeout_s} s", request_sent=True) from None
    except OSError as exc:
        raise ConnectionClosed(f"connection lost while writing: {exc}", request_sent=True) from exc
