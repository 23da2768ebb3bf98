"""Framing over loopback sockets: length headers, TPDU and its swap, every way a stream goes wrong."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from test_iso8583_support import connection, loopback_server

from authgw.iso8583 import (
    ConfigError,
    ConnectionClosed,
    Frame,
    Framing,
    FramingError,
    LengthHeader,
    Tpdu,
    encode_frame,
    read_frame,
    write_frame,
)

PAYLOAD = b"0800822000000000000004000000000000001127143005000001301"


def _serve_frames(
    framing: Framing, received: asyncio.Queue[Frame | Exception], reply: bool = False
) -> contextlib.AbstractAsyncContextManager[int]:
    """A peer that reads frames with `framing`, queues each (or the error that ended it), and may echo."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                frame = await read_frame(reader, framing)
            except Exception as exc:
                await received.put(exc)
                return
            await received.put(frame)
            if reply:
                answer = Frame(frame.payload, frame.tpdu.reply() if frame.tpdu else None)
                await write_frame(writer, framing, answer, timeout_s=2.0)

    return loopback_server(on_connect)


async def _raw_exchange(framing: Framing, data: bytes, *, close: bool = True) -> Frame | Exception:
    """Send raw bytes to a framing peer and return what it made of them."""
    received: asyncio.Queue[Frame | Exception] = asyncio.Queue()
    async with _serve_frames(framing, received) as port, connection(port) as (_, writer):
        writer.write(data)
        await writer.drain()
        if close:
            writer.write_eof()
        return await asyncio.wait_for(received.get(), 3.0)


async def test_binary_header_counts_the_bytes_after_it() -> None:
    """A frame is 2 big-endian bytes holding the payload length, then the payload, and reads back whole."""
    framing = Framing()
    assert encode_frame(framing, Frame(PAYLOAD)) == len(PAYLOAD).to_bytes(2, "big") + PAYLOAD
    frame = await _raw_exchange(framing, encode_frame(framing, Frame(PAYLOAD)) * 2, close=False)
    assert frame == Frame(PAYLOAD)


async def test_ascii_header_is_four_decimal_digits() -> None:
    """With LengthHeader.ASCII4 the length is written as 4 ASCII digits."""
    framing = Framing(header=LengthHeader.ASCII4)
    assert encode_frame(framing, Frame(PAYLOAD)) == f"{len(PAYLOAD):04d}".encode() + PAYLOAD
    assert await _raw_exchange(framing, encode_frame(framing, Frame(PAYLOAD))) == Frame(PAYLOAD)
    assert isinstance(await _raw_exchange(framing, b"00x5" + PAYLOAD), FramingError)


async def test_tpdu_follows_the_header_is_counted_and_swapped_in_the_reply() -> None:
    """A TPDU link writes 60 0001 0002 after the header (counted in it); the reply carries 60 0002 0001."""
    framing = Framing(tpdu=True)
    request = Frame(PAYLOAD, Tpdu(destination=0x0001, source=0x0002))
    wire = encode_frame(framing, request)
    assert wire[:7] == (len(PAYLOAD) + 5).to_bytes(2, "big") + bytes.fromhex("6000010002")
    received: asyncio.Queue[Frame | Exception] = asyncio.Queue()
    async with (
        _serve_frames(framing, received, reply=True) as port,
        connection(port) as (reader, writer),
    ):
        await write_frame(writer, framing, request, timeout_s=2.0)
        assert await asyncio.wait_for(received.get(), 3.0) == request
        reply = await read_frame(reader, framing, idle_timeout_s=3.0)
    assert reply == Frame(PAYLOAD, Tpdu(destination=0x0002, source=0x0001))


def test_a_frame_must_match_the_links_tpdu_setting() -> None:
    """Sending without a TPDU on a TPDU link, or with one on a plain link, is a FramingError."""
    with pytest.raises(FramingError, match="needs a TPDU"):
        encode_frame(Framing(tpdu=True), Frame(PAYLOAD))
    with pytest.raises(FramingError, match="carries no TPDU"):
        encode_frame(Framing(), Frame(PAYLOAD, Tpdu(1, 2)))


async def test_a_header_above_the_maximum_is_a_framing_error() -> None:
    """A length header of 4097 on a link whose maximum is 4096 raises FramingError before reading the body."""
    outcome = await _raw_exchange(Framing(max_frame_bytes=4096), (4097).to_bytes(2, "big"), close=False)
    assert isinstance(outcome, FramingError)
    assert "above the maximum of 4096" in str(outcome)


def test_an_oversized_frame_is_not_sent() -> None:
    """Encoding a payload above the maximum raises FramingError instead of sending what the peer refuses."""
    with pytest.raises(FramingError):
        encode_frame(Framing(max_frame_bytes=64), Frame(b"0" * 65))


@pytest.mark.parametrize(
    ("framing", "header"),
    [(Framing(), b"\x00\x00"), (Framing(tpdu=True), b"\x00\x05")],
    ids=["empty", "tpdu-only"],
)
async def test_a_header_too_small_for_a_message_is_a_framing_error(framing: Framing, header: bytes) -> None:
    """A zero length, or a TPDU link's length that leaves no room for a message, raises FramingError."""
    assert isinstance(await _raw_exchange(framing, header + b"\x60\x00\x01\x00\x02"), FramingError)


async def test_a_frame_cut_short_is_a_framing_error() -> None:
    """A header announcing 55 bytes followed by 20 and the end of stream is a short read."""
    outcome = await _raw_exchange(Framing(), (55).to_bytes(2, "big") + PAYLOAD[:20])
    assert isinstance(outcome, FramingError)
    assert "short read: frame cut after 20 of 55 bytes" in str(outcome)


async def test_a_header_cut_short_is_a_framing_error() -> None:
    """One byte of a two-byte header and the end of stream is a short read, not a clean close."""
    outcome = await _raw_exchange(Framing(), b"\x00")
    assert isinstance(outcome, FramingError)


async def test_a_body_that_stalls_is_a_framing_error() -> None:
    """A peer that sends a header and stops gets FramingError after the body timeout, not a hang."""
    outcome = await _raw_exchange(Framing(body_timeout_s=0.2), (55).to_bytes(2, "big") + b"08", close=False)
    assert isinstance(outcome, FramingError)
    assert "not complete after 0.2 s" in str(outcome)


async def test_the_end_of_stream_between_frames_is_a_clean_close() -> None:
    """The peer closing after a whole frame gives ConnectionClosed, not FramingError."""
    framing = Framing()
    received: asyncio.Queue[Frame | Exception] = asyncio.Queue()
    async with _serve_frames(framing, received) as port, connection(port) as (_, writer):
        await write_frame(writer, framing, Frame(PAYLOAD), timeout_s=2.0)
        writer.write_eof()
        assert await asyncio.wait_for(received.get(), 3.0) == Frame(PAYLOAD)
        assert isinstance(await asyncio.wait_for(received.get(), 3.0), ConnectionClosed)


async def test_an_idle_timeout_leaves_the_stream_in_step() -> None:
    """TimeoutError while waiting for a frame consumes nothing: a frame that starts later reads whole."""
    framing = Framing()
    wire = encode_frame(framing, Frame(PAYLOAD))
    got: asyncio.Queue[Frame] = asyncio.Queue()
    release = asyncio.Event()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with pytest.raises(TimeoutError):
            await read_frame(reader, framing, idle_timeout_s=0.05)
        release.set()
        with pytest.raises(TimeoutError):
            await read_frame(reader, framing, idle_timeout_s=0.1)  # only half the header has come
        await got.put(await read_frame(reader, framing, idle_timeout_s=2.0))

    async with loopback_server(on_connect) as port, connection(port) as (_, writer):
        await asyncio.wait_for(release.wait(), 3.0)
        writer.write(wire[:1])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(wire[1:])
        await writer.drain()
        assert await asyncio.wait_for(got.get(), 3.0) == Frame(PAYLOAD)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_frame_bytes": 70_000},
        {"header": LengthHeader.ASCII4, "max_frame_bytes": 10_000},
        {"tpdu": True, "max_frame_bytes": 5},
        {"body_timeout_s": 0},
    ],
)
def test_impossible_framing_settings_are_refused(kwargs: dict[str, object]) -> None:
    """A maximum the header cannot express, no room for a message, or no body deadline: ConfigError."""
    with pytest.raises(ConfigError):
        Framing(**kwargs)  # type: ignore[arg-type]
