"""10,000 random and mutated frames through a running ISO 8583 listener: it stays up, and answers each
decodable request exactly once.

An in-process gateway (stand-in on the session Redis) routes to a real issuer simulator process and
listens for ISO 8583 in plaintext. 100 batches of 100 frames go over one connection each: valid
messages of every request type, the same with bytes flipped, replaced, inserted, cut or bitmaps
rewritten, random payloads, and an oversized length header closing the connection at the end of
one batch in ten. Every frame carries a STAN of its own for the whole run (before mutation), so a
reply names the frame it answers. The oracle is the wire format: a frame that decodes as a request
expects one reply on its key (11 + 37, 11 + 7 for 0800); one that fails with readable MTI and keys
expects a 30 on them; anything else expects nothing. After every batch, an echo on a new connection
is answered, and at the end a valid authorization is approved.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from test_edge_support import running_gateway, standin_doc
from test_iso8583_support import AUTHORIZATION_FIELDS, rrn_of

from authgw.iso8583 import (
    FormatError,
    Framing,
    MatchKey,
    Message,
    OriginalData,
    Spec,
    read_frame,
    replacement_amounts,
    reply_to_format_error,
)
from chaos.processes import ManagedProcess, free_port, start_authgw
from gateway.app import Gateway

pytestmark = pytest.mark.timeout(240)

BATCHES, BATCH = 100, 100
SPEC, FRAMING = Spec(), Framing()
MAX_FRAME = 4096
_HEX = b"0123456789ABCDEF"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    port = free_port()
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", "a1"]
    proc = start_authgw(tmp_path_factory.mktemp("iso-fuzz-sim"), "iso-fuzz-a1", args, port)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess, sim: ManagedProcess
) -> AsyncIterator[Gateway]:
    work = tmp_path_factory.mktemp("iso-fuzz-gw")
    doc: dict[str, Any] = standin_doc(work, redis_server.port, "gw-iso-fuzz")
    doc["pools"][0]["members"][0]["address"] = sim.address
    doc["iso8583_listen"] = {"listen": "127.0.0.1:0"}  # plaintext, as [tls] in this document
    async with running_gateway(doc, str(work / "gateway.toml")) as gw:
        yield gw


def valid_messages(stan: str, now: datetime) -> list[Message]:
    """One valid request of each type, with `stan` and its RRN, sent now."""
    sent = now.strftime("%m%d%H%M%S")
    base = {**AUTHORIZATION_FIELDS, 7: sent, 11: stan, 12: now.strftime("%H%M%S"), 13: now.strftime("%m%d")}
    base[37] = rrn_of(stan)
    original = OriginalData("0100", f"{(int(stan) + 1) % 999_999 + 1:06d}", sent).encode()
    reversal = {n: base[n] for n in (2, 3, 4, 7, 11, 32, 37, 41, 42, 49)} | {90: original}
    return [
        Message("0100", base),
        Message("0200", base),
        Message("0400", reversal),
        Message("0420", reversal | {95: replacement_amounts(100)}),
        Message("0120", base | {38: "A1B2C3", 39: "00"}),
        Message("0800", {7: sent, 11: stan, 70: "301"}),
    ]


def mutate(raw: bytes, rnd: random.Random) -> bytes:
    """A few bytes flipped, replaced, inserted, deleted, cut, or the bitmaps rewritten."""
    data = bytearray(raw)
    for _ in range(rnd.randint(1, 4)):
        at = rnd.randrange(len(data) + 1)
        action = rnd.choice(["flip", "plausible", "insert", "delete", "truncate", "bitmaps"])
        if action == "bitmaps" and len(data) >= 36:
            data[4:36] = rnd.randbytes(16).hex().upper().encode()
        elif action == "truncate":
            del data[max(at, 1) :]
        elif action == "insert":
            data[at:at] = rnd.randbytes(rnd.randint(1, 8))
        elif at < len(data) and action == "delete":
            del data[at : at + rnd.randint(1, 8)]
        elif at < len(data) and action == "flip":
            data[at] ^= 1 << rnd.randrange(8)
        elif at < len(data):
            data[at] = rnd.choice(b"0123456789ABCDEF =D\x00\xff")
    return bytes(data) or b"0"


def frame_payload(stan: int, rnd: random.Random) -> bytes:
    now = datetime.now(UTC)
    roll = rnd.random()
    valid = rnd.choice(valid_messages(f"{stan:06d}", now)).encode(SPEC)
    if roll < 0.3:
        return valid
    if roll < 0.85:
        return mutate(valid, rnd)
    if roll < 0.93:
        return b"0100" + rnd.randbytes(rnd.randint(0, 300))
    return rnd.randbytes(rnd.randint(1, 300))


def expected_key(raw: bytes) -> MatchKey | None:
    """The key of the one reply a frame must get, or None when it must get none."""
    try:
        message = Message.decode(raw, SPEC)
    except FormatError as exc:
        reply = reply_to_format_error(exc)
        return reply.match_key if reply is not None else None
    return message.match_key if message.is_request else None


async def send_batch(port: int, payloads: list[bytes], close_with_oversized: bool) -> Counter[MatchKey]:
    """Write every frame, then read replies until the expected count (and the connection's end)."""
    expected = sum(expected_key(p) is not None for p in payloads)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(len(p).to_bytes(2, "big") + p for p in payloads))
        if close_with_oversized:
            writer.write((MAX_FRAME + 1).to_bytes(2, "big") + b"x" * 16)
        await writer.drain()
        received: Counter[MatchKey] = Counter()
        while sum(received.values()) < expected:
            frame = await read_frame(reader, FRAMING, idle_timeout_s=15.0)
            received[Message.decode(frame.payload, SPEC).match_key] += 1
        if close_with_oversized:  # the listener closes this connection, and only it
            assert await asyncio.wait_for(reader.read(1), 5.0) == b""
        return received
    finally:
        writer.close()


async def answered_echo(port: int, stan: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        sent = datetime.now(UTC).strftime("%m%d%H%M%S")
        echo = Message("0800", {7: sent, 11: f"{stan:06d}", 70: "301"}).encode(SPEC)
        writer.write(len(echo).to_bytes(2, "big") + echo)
        frame = await read_frame(reader, FRAMING, idle_timeout_s=10.0)
        return Message.decode(frame.payload, SPEC).text(39)
    finally:
        writer.close()


async def test_ten_thousand_hostile_frames_each_decodable_request_answered_once(gateway: Gateway) -> None:
    """Every decodable request (and every readable format error) gets exactly one reply; nothing else does."""
    assert gateway.iso8583 is not None
    port = gateway.iso8583.port
    rnd = random.Random(8583)
    expected: Counter[MatchKey] = Counter()
    received: Counter[MatchKey] = Counter()
    stan = 1
    for batch in range(BATCHES):
        payloads = []
        for _ in range(BATCH):
            payloads.append(frame_payload(stan, rnd)[:MAX_FRAME])
            stan += 1
        keys = [expected_key(p) for p in payloads]
        expected.update(k for k in keys if k is not None)
        received.update(await send_batch(port, payloads, close_with_oversized=batch % 10 == 9))
        assert await answered_echo(port, 900_000 + batch) == "00"
    assert received == expected, f"missing {expected - received}, unexpected {received - expected}"
    approved = valid_messages("999001", datetime.now(UTC))[0]
    assert await send_batch(port, [approved.encode(SPEC)], False) == Counter([approved.match_key])
