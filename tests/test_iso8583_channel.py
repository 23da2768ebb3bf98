"""A channel on loopback: concurrent writes stay whole frames; connecting or writing never waits forever."""

from __future__ import annotations

import asyncio
import socket

from test_iso8583_support import loopback_server

from authgw.iso8583 import Channel, ConnectionClosed, Frame, Framing, open_channel, read_frame


async def test_concurrent_writes_arrive_as_whole_frames() -> None:
    """50 tasks writing frames of different sizes at once: the peer reads 50 intact frames."""
    framing = Framing(max_frame_bytes=60_000)
    received: asyncio.Queue[Frame] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(50):
            await received.put(await read_frame(reader, framing, idle_timeout_s=5.0))

    async with loopback_server(on_connect) as port:
        channel = await open_channel("127.0.0.1", port, framing, connect_timeout_s=2.0)
        payloads = [bytes([65 + i % 26]) * (1 + i * 997) for i in range(50)]
        await asyncio.gather(*(channel.write(Frame(p)) for p in payloads))
        got = [await asyncio.wait_for(received.get(), 5.0) for _ in range(50)]
        await channel.wait_closed()
    assert sorted(f.payload for f in got) == sorted(payloads)


async def test_a_peer_that_stops_reading_fails_the_write_within_its_timeout() -> None:
    """When the peer reads nothing, a write fails with ConnectionClosed after write_timeout_s and closes."""
    framing = Framing(max_frame_bytes=60_000)
    stop = asyncio.Event()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stop.wait()  # never reads

    async with loopback_server(on_connect) as port:
        channel = await open_channel("127.0.0.1", port, framing, connect_timeout_s=2.0, write_timeout_s=0.3)
        error = None
        try:
            async with asyncio.timeout(20):
                for _ in range(2_000):  # far more than loopback socket buffers hold
                    await channel.write(Frame(b"x" * 59_000))
        except ConnectionClosed as exc:
            error = exc
        finally:
            stop.set()
        assert error is not None and error.request_sent
        assert "took no data for 0.3 s" in str(error)
        assert channel.closing
        await channel.wait_closed()


async def test_a_refused_connection_says_nothing_was_sent() -> None:
    """Connecting to a closed port raises ConnectionClosed with request_sent False (safe to try elsewhere)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        await open_channel("127.0.0.1", port, Framing(), connect_timeout_s=2.0)
    except ConnectionClosed as exc:
        assert not exc.request_sent
        assert f"127.0.0.1:{port}" in str(exc)
    else:
        raise AssertionError("connected to a closed port")


async def test_writing_on_a_closed_channel_says_nothing_was_sent() -> None:
    """After close(), write raises ConnectionClosed with request_sent False."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with loopback_server(on_connect) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        channel = Channel(reader, writer, Framing())
        channel.close()
        try:
            await channel.write(Frame(b"0800"))
        except ConnectionClosed as exc:
            assert not exc.request_sent
        else:
            raise AssertionError("wrote on a closed channel")
        await channel.wait_closed()
