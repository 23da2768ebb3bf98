"""The client multiplexer against a scripted issuer peer on loopback: matching, timeouts, drops, echoes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from helpers import assert_eventually
from test_iso8583_support import authorization, echo, loopback_server

from authgw.iso8583 import (
    ConnectionClosed,
    EchoConfig,
    FormatError,
    Frame,
    Framing,
    FramingError,
    MatchTimeout,
    Message,
    Mux,
    MuxError,
    Spec,
    Tpdu,
    build_reply,
    open_channel,
    read_frame,
    write_frame,
)

SPEC = Spec()


class Peer:
    """The issuer end of the mux's connection, scripted by the test."""

    def __init__(self, framing: Framing, *, answer_echoes: bool = False) -> None:
        self.framing = framing
        self.answer_echoes = answer_echoes
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.echoes = 0
        self._writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.connected.set()
        while True:
            frame = await read_frame(reader, self.framing)
            if Message.decode(frame.payload, SPEC).mti == "0800":
                self.echoes += 1
                if self.answer_echoes:
                    await self.send(build_reply(Message.decode(frame.payload, SPEC), "00"), frame.tpdu)
                    continue
            await self.frames.put(frame)

    async def next_request(self) -> Message:
        return Message.decode((await asyncio.wait_for(self.frames.get(), 3.0)).payload, SPEC)

    async def send(self, message: Message, tpdu: Tpdu | None = None) -> None:
        await self.send_raw(message.encode(SPEC), tpdu.reply() if tpdu else None)

    async def send_raw(self, payload: bytes, tpdu: Tpdu | None = None) -> None:
        assert self._writer is not None
        await write_frame(self._writer, self.framing, Frame(payload, tpdu), timeout_s=2.0)

    def drop(self) -> None:
        assert self._writer is not None
        self._writer.close()


@contextlib.asynccontextmanager
async def linked(
    *, echo_config: EchoConfig | None = None, answer_echoes: bool = False, framing: Framing | None = None
) -> AsyncIterator[tuple[Mux, Peer]]:
    """A started mux connected to a scripted peer; both closed on exit."""
    framing = framing or Framing()
    peer = Peer(framing, answer_echoes=answer_echoes)
    async with loopback_server(peer.on_connect) as port:
        channel = await open_channel("127.0.0.1", port, framing, connect_timeout_s=2.0)
        tpdu = Tpdu(destination=0x0001, source=0x0002) if framing.tpdu else None
        async with Mux(channel, SPEC, echo=echo_config, tpdu=tpdu) as mux:
            await asyncio.wait_for(peer.connected.wait(), 2.0)
            yield mux, peer


async def test_fifty_requests_in_flight_answered_in_reverse_order_each_get_their_own_reply() -> None:
    """50 concurrent requests answered last-first: every caller gets the reply carrying its own STAN/RRN."""
    async with linked() as (mux, peer), asyncio.TaskGroup() as tg:
        requests = [authorization(stan=f"{i:06d}") for i in range(1, 51)]
        calls = [tg.create_task(mux.request(r, timeout_s=5.0)) for r in requests]
        received = [await peer.next_request() for _ in requests]
        assert mux.in_flight == 50
        for request in reversed(received):
            await peer.send(build_reply(request, "00", approval_code="A" + request.text(11)[1:]))
    for request, call in zip(requests, calls, strict=True):
        reply = call.result()
        assert reply.match_key == request.match_key
        assert reply.text(38) == "A" + request.text(11)[1:]
    assert mux.unmatched == 0 and mux.in_flight == 0


async def test_an_unanswered_request_times_out_and_its_late_reply_is_counted_not_delivered() -> None:
    """No reply within 0.2 s raises MatchTimeout; the reply arriving afterwards only bumps `unmatched`."""
    async with linked() as (mux, peer):
        started = time.monotonic()
        with pytest.raises(MatchTimeout):
            await mux.request(authorization(stan="000007"), timeout_s=0.2)
        assert time.monotonic() - started < 1.0
        assert mux.in_flight == 0
        await peer.send(build_reply(await peer.next_request(), "05"))
        await assert_eventually(lambda: _equal(mux.unmatched, 1))
        assert mux.close_reason is None


def _equal(actual: int, expected: int) -> None:
    assert actual == expected


async def test_a_reply_nobody_waits_for_is_counted_and_the_link_keeps_working() -> None:
    """A reply with an unknown STAN is counted as unmatched; the next request is still answered."""
    async with linked() as (mux, peer):
        await peer.send(build_reply(authorization(stan="999999"), "00", approval_code="123456"))
        await assert_eventually(lambda: _equal(mux.unmatched, 1))
        async with asyncio.TaskGroup() as tg:
            call = tg.create_task(mux.request(authorization(stan="000001"), timeout_s=2.0))
            await peer.send(build_reply(await peer.next_request(), "51"))
        assert call.result().text(39) == "51"


async def test_a_dropped_connection_fails_every_pending_request_at_once() -> None:
    """The peer closing with 10 requests pending fails them all with ConnectionClosed(request_sent=True)."""
    async with linked() as (mux, peer):
        calls = [
            asyncio.create_task(mux.request(authorization(stan=f"{i:06d}"), timeout_s=10.0))
            for i in range(1, 11)
        ]
        for _ in calls:
            await peer.next_request()
        started = time.monotonic()
        peer.drop()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert time.monotonic() - started < 1.0
        assert all(isinstance(o, ConnectionClosed) and o.request_sent for o in outcomes), outcomes
        await asyncio.wait_for(mux.wait_closed(), 2.0)
        assert mux.close_reason is not None
        with pytest.raises(ConnectionClosed) as info:
            await mux.request(authorization(), timeout_s=1.0)
        assert not info.value.request_sent


async def test_a_garbled_reply_fails_its_own_request_at_once() -> None:
    """A reply with readable keys but a bad field 39 raises FormatError for its caller, not a timeout."""
    async with linked() as (mux, peer):
        call = asyncio.create_task(mux.request(authorization(stan="000001"), timeout_s=5.0))
        raw = build_reply(await peer.next_request(), "05").encode(SPEC)
        started = time.monotonic()
        await peer.send_raw(raw.replace(b"63311400000105", b"6331140000010!"))
        with pytest.raises(FormatError) as info:
            await call
        assert info.value.field == "39"
        assert time.monotonic() - started < 1.0
        assert mux.unmatched == 0


async def test_an_unanswered_echo_closes_the_mux_with_its_reason() -> None:
    """A peer that keeps the socket open but stops answering is found by the idle echo and the mux closes."""
    async with linked(echo_config=EchoConfig(idle_s=0.1, timeout_s=0.2)) as (mux, peer):
        await asyncio.wait_for(mux.wait_closed(), 2.0)
        assert peer.echoes >= 1
        assert mux.close_reason is not None
        assert "did not answer an echo within 0.2 s" in mux.close_reason.reason


async def test_answered_echoes_keep_an_idle_link_open() -> None:
    """A peer that answers 0800/301 keeps the mux open through several idle periods."""
    async with linked(echo_config=EchoConfig(idle_s=0.1, timeout_s=0.5), answer_echoes=True) as (mux, peer):
        await assert_eventually(lambda: _at_least(peer.echoes, 3), timeout_s=3.0)
        assert mux.close_reason is None


def _at_least(actual: int, minimum: int) -> None:
    assert actual >= minimum


async def test_an_echo_from_the_peer_is_answered() -> None:
    """An 0800/301 sent by the issuer gets an 0810 with 39=00 and the same STAN and field 7."""
    async with linked() as (_, peer):
        await peer.send_raw(echo(stan="000042").encode(SPEC))
        reply = await peer.next_request()
    assert reply.mti == "0810"
    assert reply.text(39) == "00"
    assert reply.match_key == echo(stan="000042").match_key


async def test_a_key_already_in_flight_is_refused() -> None:
    """A second request with the first one's STAN and RRN raises MuxError; the first still completes."""
    async with linked() as (mux, peer), asyncio.TaskGroup() as tg:
        first = tg.create_task(mux.request(authorization(stan="000005"), timeout_s=2.0))
        request = await peer.next_request()
        with pytest.raises(MuxError, match="already in flight"):
            await mux.request(authorization(stan="000005"), timeout_s=2.0)
        await peer.send(build_reply(request, "05"))
    assert first.result().text(39) == "05"


async def test_close_fails_what_is_pending_is_idempotent_and_refuses_reuse() -> None:
    """close() fails a pending request, can be called twice, and a closed mux neither restarts nor sends."""
    async with linked() as (mux, peer):
        pending = asyncio.create_task(mux.request(authorization(), timeout_s=5.0))
        await peer.next_request()
        await mux.close()
        await mux.close()
        with pytest.raises(ConnectionClosed) as info:
            await pending
        assert info.value.request_sent
        with pytest.raises(MuxError):
            await mux.start()
        with pytest.raises(ConnectionClosed) as after:
            await mux.request(authorization(), timeout_s=1.0)
        assert not after.value.request_sent


async def test_requests_carry_the_tpdu_and_swapped_replies_match() -> None:
    """On a TPDU link the mux sends its TPDU and matches the reply the peer sends with it swapped."""
    async with linked(framing=Framing(tpdu=True)) as (mux, peer), asyncio.TaskGroup() as tg:
        call = tg.create_task(mux.request(authorization(), timeout_s=2.0))
        frame = await asyncio.wait_for(peer.frames.get(), 2.0)
        assert frame.tpdu == Tpdu(destination=0x0001, source=0x0002)
        await peer.send(build_reply(Message.decode(frame.payload, SPEC), "05"), frame.tpdu)
    assert call.result().text(39) == "05"


async def test_a_request_too_large_for_the_link_is_refused_and_the_link_stays_up() -> None:
    """A request above max_frame_bytes raises FramingError without sending; the next request is answered."""
    async with linked(framing=Framing(max_frame_bytes=400)) as (mux, peer):  # a 0100 is ~300
        with pytest.raises(FramingError):
            await mux.request(authorization(stan="000001").with_fields({55: bytes(255)}), timeout_s=2.0)
        assert mux.close_reason is None and mux.in_flight == 0
        call = asyncio.create_task(mux.request(authorization(stan="000002"), timeout_s=2.0))
        await peer.send(build_reply(await peer.next_request(), "05"))
        assert (await call).text(11) == "000002"
