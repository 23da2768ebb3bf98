"""Builders and loopback plumbing shared by the ISO 8583 tests (no tests here)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from authgw.iso8583 import (
    Frame,
    Framing,
    Iso8583Error,
    Message,
    OriginalData,
    Spec,
    Tpdu,
    build_reply,
    read_frame,
    replacement_amounts,
    write_frame,
)
from chaos.bench_iso8583 import chip_authorization

# The benchmark's chip 0100 is the base of every test message, with track 1 added.
_CHIP = chip_authorization()
PAN = _CHIP.text(2)
TRACK2 = _CHIP.text(35)
TRACK1 = f"B{PAN}^DUPONT/JEAN^2812101000000000000000123456"
PIN_BLOCK = _CHIP.binary(52)
CHIP_DATA = _CHIP.binary(55)
BALANCE = "0002978C000000012345"  # field 54: available balance, EUR 123.45
WRITE_TIMEOUT_S = 2.0

AUTHORIZATION_FIELDS: dict[int, str | bytes] = {**_CHIP.fields, 45: TRACK1}


def rrn_of(stan: str) -> str:
    """A retrieval reference number derived from the STAN, so tests can tell replies apart."""
    return f"633114{stan}"


def authorization(stan: str = "000123", mti: str = "0100") -> Message:
    """An authorization (0100/0200) with every field we use, or an advice when mti is 0120/0220."""
    fields: dict[int, str | bytes] = {**AUTHORIZATION_FIELDS, 11: stan, 37: rrn_of(stan)}
    if mti in ("0120", "0121", "0220", "0221"):
        fields.update({38: "A1B2C3", 39: "00"})
    return Message(mti, fields)


def reversal(stan: str = "000124", mti: str = "0400", final_amount_minor: int | None = None) -> Message:
    """A reversal (0400/0420/0421) of authorization 000123, partial when a final amount is given."""
    original = OriginalData("0100", "000123", "1127143005", acquirer_id="12345678901").encode()
    fields: dict[int, str | bytes] = {n: AUTHORIZATION_FIELDS[n] for n in (2, 3, 4, 7, 32, 41, 42, 49)} | {
        11: stan,
        37: rrn_of(stan),
        90: original,
    }
    if final_amount_minor is not None:
        fields[95] = replacement_amounts(final_amount_minor)
    return Message(mti, fields)


def echo(stan: str = "000001", code: str = "301") -> Message:
    """An 0800 network management request."""
    return Message("0800", {7: "1127143005", 11: stan, 70: code})


def every_message_type() -> dict[str, Message]:
    """One message of each MTI we use, by MTI, with every field it can carry."""
    return {
        "0100": authorization(mti="0100"),
        "0110": build_reply(authorization(), "00", approval_code="A1B2C3", extra={54: BALANCE}),
        "0120": authorization(mti="0120"),
        "0121": authorization(mti="0121"),
        "0130": build_reply(authorization(mti="0120"), "00"),
        "0200": authorization(mti="0200"),
        "0210": build_reply(authorization(mti="0200"), "51"),
        "0220": authorization(mti="0220"),
        "0221": authorization(mti="0221"),
        "0230": build_reply(authorization(mti="0220"), "00"),
        "0400": reversal(final_amount_minor=7000),
        "0410": build_reply(reversal(), "00"),
        "0420": reversal(mti="0420"),
        "0421": reversal(mti="0421"),
        "0430": build_reply(reversal(mti="0421"), "00"),
        "0800": echo(),
        "0810": build_reply(echo(), "00"),
    }


@contextlib.asynccontextmanager
async def loopback_server(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 calling `on_connect` per connection; yields its port.

    On exit it closes every connection and waits for the handlers; a handler that failed for
    any reason but its connection going away (an assertion, say) fails the test here.
    """
    writers: list[asyncio.StreamWriter] = []
    tasks: list[asyncio.Task[None]] = []
    failures: list[BaseException] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        try:
            await on_connect(reader, writer)
        except (Iso8583Error, OSError):
            pass  # the other end went away: what the test made of it, it checks itself
        except Exception as exc:
            failures.append(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=2.0)
            for task in stuck:
                task.cancel()
        await server.wait_closed()
    if failures:
        raise failures[0]


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw client connection to 127.0.0.1:port, closed on exit."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def send(
    writer: asyncio.StreamWriter, message: Message, spec: Spec, framing: Framing, tpdu: Tpdu | None = None
) -> None:
    """Encode and write one message as a frame."""
    await write_frame(writer, framing, Frame(message.encode(spec), tpdu), timeout_s=WRITE_TIMEOUT_S)


async def receive(
    reader: asyncio.StreamReader, spec: Spec, framing: Framing, timeout_s: float = 2.0
) -> Message:
    """Read and decode one frame, within a deadline."""
    frame = await read_frame(reader, framing, idle_timeout_s=timeout_s)
    return Message.decode(frame.payload, spec)
