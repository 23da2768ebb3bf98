"""An ISO 8583 client written from the README's field table alone: struct and bytes, no authgw import.

It is what an acquirer's developer would write from "ISO 8583 acquirer link" in README.md: a
2-byte big-endian length counting what follows, the MTI, an ASCII-hex primary bitmap (and a
secondary one when bit 1 is set), then each field in ascending order as the table says: fixed
n fields zero-filled on the left, ans fields space-filled on the right, LLVAR / LLLVAR with 2 / 3
ASCII digits counting the data bytes, b fields raw. Decoding reads the same table back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct

# field -> (type, prefix digits (0 = fixed), length or maximum), from the README's table.
TABLE: dict[int, tuple[str, int, int]] = {
    2: ("n", 2, 19), 3: ("n", 0, 6), 4: ("n", 0, 12), 7: ("n", 0, 10), 11: ("n", 0, 6), 12: ("n", 0, 6),
    13: ("n", 0, 4), 14: ("n", 0, 4), 18: ("n", 0, 4), 22: ("n", 0, 3), 32: ("n", 2, 11), 35: ("z", 2, 37),
    37: ("an", 0, 12), 38: ("an", 0, 6), 39: ("an", 0, 2), 41: ("ans", 0, 8), 42: ("ans", 0, 15),
    43: ("ans", 0, 40), 45: ("ans", 2, 76), 49: ("n", 0, 3), 52: ("b", 0, 8), 54: ("an", 3, 120),
    55: ("b", 3, 255), 70: ("n", 0, 3), 90: ("n", 0, 42), 95: ("an", 0, 42),
}  # fmt: skip


def _field(number: int, value: str | bytes) -> bytes:
    kind, prefix, length = TABLE[number]
    data = value if isinstance(value, bytes) else value.encode("ascii")
    if prefix == 0:
        if kind == "n":
            data = data.rjust(length, b"0")
        elif kind != "b":
            data = data.ljust(length, b" ")
        assert len(data) == length, (number, len(data))
        return data
    assert 1 <= len(data) <= length, (number, len(data))
    return f"{len(data):0{prefix}d}".encode("ascii") + data


def encode(mti: str, fields: dict[int, str | bytes]) -> bytes:
    """The message bytes (no length header): MTI, ASCII-hex bitmap(s), fields in ascending order."""
    numbers = sorted(fields)
    bits = 0
    for n in numbers:
        bits |= 1 << (128 - n)
    secondary = any(n > 64 for n in numbers)
    if secondary:
        bits |= 1 << 127  # bit 1: a secondary bitmap follows
    bitmap = f"{bits:032X}" if secondary else f"{bits >> 64:016X}"
    body = b"".join(_field(n, fields[n]) for n in numbers)
    return mti.encode("ascii") + bitmap.encode("ascii") + body


def frame(payload: bytes) -> bytes:
    """A frame: the 2-byte big-endian length of the payload, then the payload."""
    return struct.pack(">H", len(payload)) + payload


def decode(payload: bytes) -> tuple[str, dict[int, str | bytes]]:
    """A message back to its MTI and fields (raises on anything the table does not allow)."""
    mti = payload[:4].decode("ascii")
    bits = int(payload[4:20], 16) << 64
    at = 20
    if bits >> 127 & 1:
        bits |= int(payload[20:36], 16)
        at = 36
    fields: dict[int, str | bytes] = {}
    for n in range(2, 129):
        if not bits >> (128 - n) & 1:
            continue
        kind, prefix, length = TABLE[n]
        size = length
        if prefix:
            size = int(payload[at : at + prefix])
            at += prefix
        data = payload[at : at + size]
        at += size
        fields[n] = data if kind == "b" else data.decode("ascii")
    assert at == len(payload), "bytes left after the last field"
    return mti, fields


class Connection:
    """One connection: write frames, read frames (no matching: the caller matches by the keys)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext | None) -> Connection:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
        )
        return cls(reader, writer)

    async def send(self, mti: str, fields: dict[int, str | bytes]) -> None:
        self.writer.write(frame(encode(mti, fields)))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, timeout_s: float = 10.0) -> tuple[str, dict[int, str | bytes]]:
        async with asyncio.timeout(timeout_s):
            (length,) = struct.unpack(">H", await self.reader.readexactly(2))
            return decode(await self.reader.readexactly(length))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()
