"""The server side of a connection, driven by a raw loopback client: concurrency, format errors, closing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from helpers import assert_eventually
from test_iso8583_support import authorization, connection, loopback_server, receive, send

from authgw.iso8583 import (
    Channel,
    ConnectionClosed,
    FormatError,
    FormatErrorHandler,
    Framing,
    Message,
    RequestHandler,
    ServerConnection,
    Spec,
    Tpdu,
    answer_format_error,
    build_reply,
    read_frame,
)

SPEC = Spec()
FRAMING = Framing()


async def approve(request: Message) -> Message:
    return build_reply(request, "00", approval_code="123456")


@contextlib.asynccontextmanager
async def serving(
    handler: RequestHandler,
    *,
    framing: Framing = FRAMING,
    on_format_error: FormatErrorHandler = answer_format_error,
    idle_timeout_s: float = 5.0,
    max_in_flight: int = 256,
) -> AsyncIterator[tuple[int, list[ServerConnection]]]:
    """A listener serving each connection with ServerConnection; yields its port and the connections."""
    connections: list[ServerConnection] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConnection(
            Channel(reader, writer, framing),
            SPEC,
            handler,
            on_format_error=on_format_error,
            idle_timeout_s=idle_timeout_s,
            max_in_flight=max_in_flight,
        )
        connections.append(conn)
        await conn.serve()

    async with loopback_server(on_connect) as port:
        yield port, connections


async def test_concurrent_requests_are_answered_as_each_completes() -> None:
    """10 requests are handled at once; each reply is written as its handler finishes, last-first here."""
    gates = {f"{stan:06d}": asyncio.Event() for stan in range(1, 11)}
    handling: list[str] = []

    async def gated(request: Message) -> Message:
        handling.append(request.text(11))
        await gates[request.text(11)].wait()
        return await approve(request)

    async with serving(gated) as (port, _), connection(port) as (reader, writer):
        for stan in gates:
            await send(writer, authorization(stan=stan), SPEC, FRAMING)
        await assert_eventually(lambda: _count(handling, 10))
        for stan in reversed(gates):
            gates[stan].set()
            reply = await receive(reader, SPEC, FRAMING)
            assert reply.match_key == authorization(stan=stan).match_key
            assert reply.text(39) == "00"


async def test_a_malformed_request_is_answered_30_and_the_connection_keeps_serving() -> None:
    """An 0100 with letters in its amount gets an 0110 with 39=30 and its keys; the next request gets 00."""
    raw = authorization(stan="000001").encode(SPEC).replace(b"000000012345", b"00000001234A", 1)
    async with serving(approve) as (port, _), connection(port) as (reader, writer):
        await send_raw(writer, raw)
        answer = await receive(reader, SPEC, FRAMING)
        await send(writer, authorization(stan="000002"), SPEC, FRAMING)
        following = await receive(reader, SPEC, FRAMING)
    assert answer.mti == "0110" and answer.text(39) == "30"
    assert answer.match_key == authorization(stan="000001").match_key
    assert following.text(39) == "00" and following.text(11) == "000002"


async def send_raw(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(len(payload).to_bytes(2, "big") + payload)
    await writer.drain()


async def test_the_format_error_handler_gets_the_mti_and_keys() -> None:
    """A custom format-error handler sees MTI 0100, field 4 and keys 7/11/37; returning None sends nothing."""
    seen: list[FormatError] = []

    async def record(error: FormatError) -> Message | None:
        seen.append(error)
        return None

    raw = authorization(stan="000001").encode(SPEC).replace(b"000000012345", b"00000001234A", 1)
    async with serving(approve, on_format_error=record) as (port, _), connection(port) as (reader, writer):
        await send_raw(writer, raw)
        with pytest.raises(TimeoutError):
            await read_frame(reader, FRAMING, idle_timeout_s=0.3)
    assert len(seen) == 1
    assert (seen[0].mti, seen[0].field) == ("0100", "4")
    assert seen[0].keys == {7: "1127143005", 11: "000001", 37: "633114000001"}


async def test_an_unreadable_frame_gets_no_reply_and_the_connection_keeps_serving() -> None:
    """A frame that is not ISO 8583 at all gets no answer (nothing to match it by); the next request does."""
    async with serving(approve) as (port, _), connection(port) as (reader, writer):
        await send_raw(writer, b"GET / HTTP/1.1")
        with pytest.raises(TimeoutError):
            await read_frame(reader, FRAMING, idle_timeout_s=0.3)
        await send(writer, authorization(), SPEC, FRAMING)
        assert (await receive(reader, SPEC, FRAMING)).text(39) == "00"


async def test_a_framing_error_closes_only_that_connection() -> None:
    """A client sending an oversized header is disconnected; another client of the listener is served."""
    async with (
        serving(approve) as (port, _),
        connection(port) as (bad_reader, bad),
        connection(port) as (reader, good),
    ):
        bad.write(b"\xff\xff")
        await bad.drain()
        with pytest.raises(ConnectionClosed):
            await read_frame(bad_reader, FRAMING, idle_timeout_s=2.0)
        await send(good, authorization(), SPEC, FRAMING)
        assert (await receive(reader, SPEC, FRAMING)).text(39) == "00"


async def test_a_silent_peer_is_disconnected_after_the_idle_timeout() -> None:
    """With idle_timeout_s=0.2 a client that sends nothing sees the connection closed within a second."""
    async with serving(approve, idle_timeout_s=0.2) as (port, _), connection(port) as (reader, _):
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            await read_frame(reader, FRAMING, idle_timeout_s=2.0)
        assert 0.15 < time.monotonic() - started < 1.0


async def test_a_peer_waiting_for_a_slow_answer_is_not_idle() -> None:
    """A request whose handling outlasts the idle timeout still gets its answer on the open connection."""

    async def slow(request: Message) -> Message:
        await asyncio.sleep(0.5)
        return await approve(request)

    async with serving(slow, idle_timeout_s=0.1) as (port, _), connection(port) as (reader, writer):
        await send(writer, authorization(), SPEC, FRAMING)
        assert (await receive(reader, SPEC, FRAMING)).text(39) == "00"


async def test_a_handler_that_fails_answers_96(caplog: pytest.LogCaptureFixture) -> None:
    """A handler raising, or returning a reply that breaks the format, gets the request answered 96."""

    async def broken(request: Message) -> Message:
        if request.text(11) == "000001":
            raise RuntimeError("bug")
        return build_reply(request, "00")  # approved without an approval code: breaks the format

    async with serving(broken) as (port, _), connection(port) as (reader, writer):
        for stan in ("000001", "000002"):
            await send(writer, authorization(stan=stan), SPEC, FRAMING)
            reply = await receive(reader, SPEC, FRAMING)
            assert (reply.text(11), reply.text(39)) == (stan, "96")
    assert caplog.text.count("handler failed") == 2


async def test_replies_carry_the_request_tpdu_swapped() -> None:
    """On a TPDU link the reply's TPDU is the request's with source and destination exchanged."""
    framing = Framing(tpdu=True)
    async with serving(approve, framing=framing) as (port, _), connection(port) as (reader, writer):
        await send(writer, authorization(), SPEC, framing, Tpdu(destination=0x0010, source=0x0020))
        frame = await read_frame(reader, framing, idle_timeout_s=2.0)
    assert frame.tpdu == Tpdu(destination=0x0020, source=0x0010)


async def test_at_most_max_in_flight_requests_are_handled_at_once() -> None:
    """With max_in_flight=2 and handlers held, 2 of 5 requests are read; all 5 are answered once released."""
    release = asyncio.Event()
    active: list[str] = []

    async def held(request: Message) -> Message:
        active.append(request.text(11))
        await release.wait()
        return await approve(request)

    async with serving(held, max_in_flight=2) as (port, _), connection(port) as (reader, writer):
        for stan in range(1, 6):
            await send(writer, authorization(stan=f"{stan:06d}"), SPEC, FRAMING)
        await assert_eventually(lambda: _count(active, 2))
        await asyncio.sleep(0.1)
        assert len(active) == 2
        release.set()
        replies = [await receive(reader, SPEC, FRAMING) for _ in range(5)]
    assert sorted(r.text(11) for r in replies) == [f"{stan:06d}" for stan in range(1, 6)]


def _count(items: list[str], expected: int) -> None:
    assert len(items) == expected


async def test_close_stops_reading_and_still_answers_what_was_read() -> None:
    """close() during a handler: its reply is still written, then serve() ends and the connection closes."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def held(request: Message) -> Message:
        started.set()
        await release.wait()
        return await approve(request)

    async with serving(held) as (port, connections), connection(port) as (reader, writer):
        await send(writer, authorization(), SPEC, FRAMING)
        await asyncio.wait_for(started.wait(), 2.0)
        connections[0].close()
        connections[0].close()
        release.set()
        assert (await receive(reader, SPEC, FRAMING)).text(39) == "00"
        with pytest.raises(ConnectionClosed):
            await read_frame(reader, FRAMING, idle_timeout_s=2.0)
