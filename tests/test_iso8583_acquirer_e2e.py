"""An acquirer written from the README's table alone talks ISO 8583 to a real gateway process over mutual TLS.

One topology for the module: a gateway process (`authgw serve`) with `[iso8583_listen]`, one
issuer simulator, Redis for stand-in, every link mutual TLS. The client (tests/iso8583_readme_client.py)
builds frames with struct and bytes, never with authgw.iso8583. Money is checked per request against
the issuer simulator's books, whose request ids are the README's derivation (32 + 11 + 7).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from helpers import assert_eventually
from iso8583_readme_client import Connection

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import simulator_pb2
from chaos.processes import free_port, run_authgw, wait_for_port
from chaos.topology import Topology, TopologySpec

pytestmark = pytest.mark.timeout(120)

PAN = "4111111111111111"  # the simulator's well-known card that always has funds
ACQUIRER = "1001"
_stans = itertools.count(100)


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Topology, int]]:
    """A TLS topology whose gateway listens for ISO 8583 on its own port."""
    port = free_port()
    spec = TopologySpec(
        pools={"primary": ("a1",)},
        redis=True,
        gateway_extra={"iso8583_listen": {"listen": f"127.0.0.1:{port}"}},
    )
    topology = Topology(tmp_path_factory.mktemp("iso-e2e"), spec).start()
    try:
        wait_for_port(port)
        yield topology, port
    finally:
        topology.stop()


def acquirer_tls(topology: Topology, acquirer: str = ACQUIRER) -> ssl.SSLContext:
    """What the acquirer presents: its certificate, and the CA it checks the gateway with."""
    assert topology.pki is not None
    files = topology.pki.acquirer_files(acquirer)
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(files.cert, files.key)
    return context


@pytest.fixture
async def link(topo: tuple[Topology, int]) -> AsyncIterator[Connection]:
    topology, port = topo
    connection = await Connection.open(port, acquirer_tls(topology))
    yield connection
    await connection.close()


def now_fields() -> dict[int, str | bytes]:
    now = datetime.now(UTC)
    return {7: now.strftime("%m%d%H%M%S"), 12: now.strftime("%H%M%S"), 13: now.strftime("%m%d")}


def authorization(
    amount_minor: int, *, expiry: str = "3012", acquirer: str = ACQUIRER
) -> dict[int, str | bytes]:
    stan = f"{next(_stans):06d}"
    return {
        2: PAN, 3: "000000", 4: f"{amount_minor:012d}", **now_fields(), 11: stan, 14: expiry, 18: "5411",
        22: "051", 32: acquirer, 37: f"633114{stan}", 41: "TERM0001", 42: "MERCHANT0000001",
        43: "SUPERMARCHE DU COIN      PARIS        FR", 49: "978",
    }  # fmt: skip


def reversal(original: dict[int, str | bytes], final_minor: int | None) -> dict[int, str | bytes]:
    stan = f"{next(_stans):06d}"
    fields = {n: original[n] for n in (2, 3, 4, 32, 41, 42, 49)}
    fields |= {7: now_fields()[7], 11: stan, 37: f"633114{stan}"}
    fields[90] = f"0100{original[11]}{original[7]}{0:011d}{0:011d}"
    if final_minor is not None:
        fields[95] = f"{final_minor:012d}{0:012d}C{0:08d}C{0:08d}"
    return fields


def echo() -> dict[int, str | bytes]:
    return {7: now_fields()[7], 11: f"{next(_stans):06d}", 70: "301"}


def request_id(fields: dict[int, str | bytes]) -> str:
    """The README's derivation: field 32 zero-filled to 11 digits, 11, 7."""
    return f"{str(fields[32]).zfill(11)}:{fields[11]}:{fields[7]}"


def key(mti: str, fields: dict[int, str | bytes]) -> tuple[str, str | bytes, str | bytes]:
    """What a reply matches its request by: MTI, 11, and 37 (7 for network management)."""
    return mti, fields[11], fields[7] if mti.startswith("08") else fields[37]


async def books(topology: Topology) -> dict[str, simulator_pb2.RequestBook]:
    async with topology.sim_control("a1") as control:
        ledger = await control.books()
    return {book.request_id: book for book in ledger.books if book.acquirer_id == ACQUIRER}


def booked(
    ledger: dict[str, simulator_pb2.RequestBook], fields: dict[int, str | bytes]
) -> simulator_pb2.RequestBook:
    """The issuer's book of a request; an AssertionError (retried by assert_eventually) until it exists."""
    book = ledger.get(request_id(fields))
    assert book is not None, f"no book yet for {request_id(fields)}"
    return book


async def exchange(link: Connection, messages: list[tuple[str, dict[int, str | bytes]]]) -> dict:
    """Write every message before reading any reply; return the replies by their match key."""
    for mti, fields in messages:
        await link.send(mti, fields)
    replies = {}
    for _ in messages:
        mti, fields = await link.receive()
        replies[key(mti, fields)] = fields
    return replies


async def test_fifty_in_flight_on_one_connection_every_reply_matches(
    topo: tuple[Topology, int], link: Connection
) -> None:
    """0800, 0100 and 0400 (full and partial) with 50 in flight: each reply carries its request's keys
    and echoed fields, and the issuer's book of each request ends at what the replies said."""
    topology, _ = topo
    earlier = [authorization(1_000 + i) for i in range(10)]
    first = await exchange(link, [("0100", f) for f in earlier])
    assert all(first[key("0110", f)][39] == "00" for f in earlier)
    sent = [("0100", authorization(2_000 + i)) for i in range(25)]
    sent += [("0400", reversal(f, None if i < 5 else 600)) for i, f in enumerate(earlier)]
    sent += [("0800", echo()) for _ in range(15)]
    replies = await exchange(link, sent)
    assert len(replies) == 50
    for mti, fields in sent:
        reply = replies[key(f"{mti[:2]}{int(mti[2]) + 1}0", fields)]
        assert reply[39] == "00", (mti, reply)
        for echoed in (2, 3, 4, 7, 11, 32, 37, 41, 42, 49, 70, 90, 95):
            assert reply.get(echoed) == fields.get(echoed), (mti, echoed)
        assert (38 in reply) is (mti == "0100") and len(str(reply.get(38, "A1B2C3"))) == 6

    async def books_match() -> None:  # a reversal recorded by stand-in (STORED) reaches the issuer later
        ledger = await books(topology)
        for i, fields in enumerate(earlier):
            assert booked(ledger, fields).final_minor == (0 if i < 5 else 600)
        for _, fields in sent[:25]:
            assert booked(ledger, fields).final_minor == int(fields[4])

    await assert_eventually(books_match, timeout_s=30.0, interval_s=0.5)


async def test_an_expired_card_is_declined_54(topo: tuple[Topology, int], link: Connection) -> None:
    """Field 14 before this month: 0110 with 39 = 54, no approval code, nothing held by the issuer."""
    topology, _ = topo
    fields = authorization(1_500, expiry="2001")
    replies = await exchange(link, [("0100", fields)])
    reply = replies[key("0110", fields)]
    assert reply[39] == "54" and 38 not in reply
    book = (await books(topology)).get(request_id(fields))
    assert book is None or book.final_minor == 0  # the simulator declines before booking: nothing held


async def test_a_malformed_frame_gets_30_or_a_log_and_the_connection_survives(link: Connection) -> None:
    """A bad field with readable keys: 30 with the keys; an unreadable frame: no reply; then an echo works."""
    bad_amount = authorization(1_000) | {4: "0000000X1000"}  # field 4 is n: digits only
    await link.send("0100", bad_amount)
    mti, reply = await link.receive()
    assert (mti, reply[11], reply[37], reply[39]) == ("0110", bad_amount[11], bad_amount[37], "30")
    await link.send_raw(b"\x00\x05\xff\xfe\x00\x01\x02")  # no MTI to read: logged, not answered
    unknown_mode = authorization(1_000) | {22: "991"}  # decodes, but no channel has entry mode 99
    probe = echo()
    replies = await exchange(link, [("0100", unknown_mode), ("0800", probe)])
    assert replies[key("0110", unknown_mode)][39] == "30"
    assert replies[key("0810", probe)][39] == "00"


async def test_field_32_of_another_acquirer_gets_63(topo: tuple[Topology, int], link: Connection) -> None:
    """Acquirer 1001's certificate sending field 32 = 1002: 63, and nothing reaches the issuer."""
    topology, _ = topo
    fields = authorization(1_000, acquirer="1002")
    replies = await exchange(link, [("0100", fields)])
    assert replies[key("0110", fields)][39] == "63"
    async with topology.sim_control("a1") as control:
        ledger = await control.books()
    assert not [b for b in ledger.books if b.request_id == request_id(fields)]


async def test_with_every_issuer_host_stopped_standin_answers_39_and_38(
    topo: tuple[Topology, int], link: Connection
) -> None:
    """The only issuer host SIGSTOPped: 0110s from stand-in with 39 = 00 and an approval code; once it
    resumes, settlement advises each approval exactly once and the issuer's books hold them."""
    topology, _ = topo
    topology.sims["a1"].signal(signal.SIGSTOP)
    try:
        sent = [authorization(500 + i) for i in range(5)]
        replies = await exchange(link, [("0100", f) for f in sent])
    finally:
        topology.sims["a1"].signal(signal.SIGCONT)
    for fields in sent:
        reply = replies[key("0110", fields)]
        assert reply[39] == "00" and len(str(reply[38])) == 6

    async def advised_once() -> None:
        ledger = await books(topology)
        for f in sent:
            book = booked(ledger, f)
            assert (book.approval_advices, book.final_minor) == (1, int(f[4])), book

    await assert_eventually(advised_once, timeout_s=60.0, interval_s=0.5)


def acquirer_advice(amount_minor: int, mti: str = "0120") -> dict[int, str | bytes]:
    """A merchant's forced approval (39 = 00, the voice authorization's code in 38)."""
    return authorization(amount_minor) | {38: "V12345", 39: "00"}


async def test_an_acquirer_advice_reusing_a_request_id_for_other_content_gets_94(
    topo: tuple[Topology, int], link: Connection
) -> None:
    """0220 advised, then 0220 with the same 32 + 11 + 7 and another amount: 94, only the first posted."""
    topology, _ = topo
    fields = acquirer_advice(800)
    first = await exchange(link, [("0220", fields)])
    assert first[key("0230", fields)][39] == "00"
    other = fields | {4: f"{900:012d}"}
    replies = await exchange(link, [("0220", other)])
    assert replies[key("0230", other)][39] == "94"

    async def posted_once() -> None:
        book = booked(await books(topology), fields)
        assert (book.approval_advices, book.final_minor) == (1, 800), book

    await assert_eventually(posted_once, timeout_s=30.0, interval_s=0.5)


async def test_an_acquirer_advice_is_recorded_answered_00_and_posted_once(
    topo: tuple[Topology, int], link: Connection
) -> None:
    """0120 (and its repeat 0121) of a forced approval, 0220 (and 0221) of an offline one (39 = Y1): 0130 /
    0230 with 39 = 00, and the issuer posts each once with its origin."""
    topology, _ = topo
    forced, offline = acquirer_advice(700), acquirer_advice(750) | {39: "Y1"}
    replies = await exchange(link, [("0120", forced), ("0220", offline)])
    assert (replies[key("0130", forced)][39], replies[key("0230", offline)][39]) == ("00", "00")
    repeat = await exchange(link, [("0121", forced), ("0221", offline)])
    assert (repeat[key("0130", forced)][39], repeat[key("0230", offline)][39]) == ("00", "00")

    async def posted_once() -> None:
        ledger = await books(topology)
        for fields, origin in ((forced, pb.ACQUIRER_FORCED_POST), (offline, pb.ACQUIRER_OFFLINE)):
            book = booked(ledger, fields)
            assert (book.approval_advices, book.final_minor) == (1, int(fields[4])), book
            assert [a.origin for a in book.advices] == [origin], book

    await assert_eventually(posted_once, timeout_s=30.0, interval_s=0.5)


def cli_send(topology: Topology, port: int, *flags: str) -> subprocess.CompletedProcess[str]:
    """`authgw iso8583 send` as acquirer 1001 (its certificate), to the listener."""
    assert topology.pki is not None
    files = topology.pki.acquirer_files(ACQUIRER)
    tls = ["--cert", str(files.cert), "--key", str(files.key), "--ca", str(files.ca)]
    return run_authgw(["iso8583", "send", "--target", f"127.0.0.1:{port}", *tls, *flags])


def printed(out: str) -> dict[str, str]:
    """The reply's fields as the command prints them: number -> value."""
    return {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.split()[0].isdigit()}


async def test_the_command_line_client_sends_and_prints_the_reply(topo: tuple[Topology, int]) -> None:
    """authgw iso8583 send: an echo, an authorization then its partial reversal, an expired card (54)."""
    topology, port = topo
    echo_out = await asyncio.to_thread(cli_send, topology, port, "--mti", "0800", "--network-code", "301")
    assert echo_out.returncode == 0, echo_out.stderr
    assert printed(echo_out.stdout)["39"] == "00" and "MTI  0810" in echo_out.stdout
    flags = ["--pan", PAN, "--amount", "12.34", "--stan", "654321", "--expiry", "3012"]
    approved = await asyncio.to_thread(cli_send, topology, port, "--mti", "0100", *flags)
    fields = printed(approved.stdout)
    assert (fields["39"], len(fields["38"]), fields["2"]) == ("00", 6, "****1111"), approved.stdout
    partial = ["--original-stan", "654321", "--original-time", fields["7"], "--final-amount", "5.00"]
    reversed_ = await asyncio.to_thread(cli_send, topology, port, "--mti", "0400", *flags[:4], *partial)
    assert printed(reversed_.stdout)["39"] == "00", reversed_.stdout + reversed_.stderr
    expired = await asyncio.to_thread(cli_send, topology, port, "--pan", PAN, "--expiry", "2001")
    assert printed(expired.stdout)["39"] == "54"


def test_the_command_line_client_requires_the_acquirer_certificate(topo: tuple[Topology, int]) -> None:
    """Without --cert/--key/--ca (and without --insecure) it stops, naming the missing flags."""
    _, port = topo
    out = run_authgw(["iso8583", "send", "--target", f"127.0.0.1:{port}", "--mti", "0800"])
    assert out.returncode != 0 and "--cert, --key, --ca missing" in out.stderr
