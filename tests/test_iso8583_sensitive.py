"""Track data (35, 45), PIN blocks (52) and chip data (55) reach the issuer unchanged and nothing else.

Two scenarios over the ISO 8583 listener:

- an in-process gateway in front of a recording issuer host (a real gRPC server keeping the bytes
  it receives): the PIN block and the rest arrive as sent;
- a gateway process with OTLP tracing to a receiver, a Redis of its own (AOF) for stand-in, two
  issuer simulators: authorizations through the issuers, then with both hung (stand-in,
  journal), a reversal and a malformed message carrying track data, then recovery (settlement
  advises). Then every log line, exported span and metric, Redis key, value and persistence
  file, SQLite journal and file under the work directory is scanned for those bytes, raw and
  in hex.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import assert_eventually
from pan_scan_collect import Outputs, collect_files, dump_redis, persistence
from redis.asyncio import Redis
from telemetry_scenario import FAST_EXPORT, observed_pools, traced_sim
from test_edge_support import recording_issuer, running_gateway
from test_iso8583_support import AUTHORIZATION_FIELDS, rrn_of

from authgw.iso8583 import Framing, Message, OriginalData, Spec, read_frame
from authgw.v1 import authorization_pb2 as pb
from chaos.otlp_receiver import OtlpReceiver
from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_authgw, start_redis, wait_for_port
from chaos.sim_control import SimControl
from chaos.topology import standin_toml, to_toml

pytestmark = pytest.mark.timeout(180)

SPEC, FRAMING = Spec(), Framing()
PAN = "4111111111111111"
DISCRETIONARY = "29127019876543210987"  # track 2 after the separator: expiry, service code, issuer data
TRACK2 = f"{PAN}={DISCRETIONARY}"
CARDHOLDER = "ISOSCANHOLDER/SENSITIVE"
TRACK1 = f"B{PAN}^{CARDHOLDER}^{DISCRETIONARY}"
PIN_BLOCK = os.urandom(8)
CHIP_DATA = b"\x9f\x26\x08" + os.urandom(8) + b"\x9f\x10\x12" + os.urandom(18)


def sensitive_forms() -> dict[str, list[bytes]]:
    """Each sensitive value in the forms a leak could take: raw, hex (both cases), text."""
    forms = {
        "track2": [DISCRETIONARY.encode()],
        "track1": [CARDHOLDER.encode()],
        "pin block": [PIN_BLOCK, PIN_BLOCK.hex().encode(), PIN_BLOCK.hex().upper().encode()],
        "chip data": [
            CHIP_DATA[3:11],
            CHIP_DATA[3:11].hex().encode(),
            CHIP_DATA[3:11].hex().upper().encode(),
        ],
    }
    return forms


def authorization(stan: int, **extra: str | bytes) -> Message:
    now = datetime.now(UTC)
    fields: dict[int, str | bytes] = {
        **AUTHORIZATION_FIELDS,
        7: now.strftime("%m%d%H%M%S"),
        11: f"{stan:06d}",
    }
    fields |= {12: now.strftime("%H%M%S"), 13: now.strftime("%m%d"), 37: rrn_of(f"{stan:06d}"), 32: "1001"}
    fields |= {2: PAN, 35: TRACK2, 45: TRACK1, 52: PIN_BLOCK, 55: CHIP_DATA, **extra}
    return Message("0100", fields)


async def exchange(port: int, messages: list[Message | bytes]) -> list[Message]:
    """Send every message (or raw payload) on one connection; the replies, as many as were expected."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for message in messages:
            payload = message if isinstance(message, bytes) else message.encode(SPEC)
            writer.write(len(payload).to_bytes(2, "big") + payload)
        await writer.drain()
        replies = []
        for _ in messages:
            frame = await read_frame(reader, FRAMING, idle_timeout_s=15.0)
            replies.append(Message.decode(frame.payload, SPEC))
        return replies
    finally:
        writer.close()


async def test_the_issuer_receives_the_pin_block_and_card_data_unchanged(tmp_path: Path) -> None:
    """52, 35, 45 and 55 of an 0100 arrive at the issuer host in `sensitive`, byte for byte."""
    async with recording_issuer() as issuer:
        doc = {
            "gateway": {"listen": f"127.0.0.1:{free_port()}"},
            **PLAINTEXT,
            "iso8583_listen": {"listen": "127.0.0.1:0"},
            "pools": [{"name": "p", "priority": 1, "members": [{"name": "r", "address": issuer.address}]}],
        }
        async with running_gateway(doc, str(tmp_path / "gw.toml")) as gateway:
            assert gateway.iso8583 is not None
            (reply,) = await exchange(gateway.iso8583.port, [authorization(7)])
    assert reply.text(39) == "00" and not {35, 45, 52, 55} & set(reply.fields)
    (received,) = [pb.AuthorizeRequest.FromString(raw) for raw in issuer.authorizations.values()]
    sensitive = received.sensitive
    assert (sensitive.pin_block, sensitive.track2, sensitive.track1, sensitive.chip_data) == (
        PIN_BLOCK, TRACK2, TRACK1, CHIP_DATA
    )  # fmt: skip


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[ManagedProcess]:
    proc = start_redis(tmp_path / "redis")
    yield proc
    proc.stop()


def gateway_process(
    workdir: Path, sims: dict[str, ManagedProcess], endpoint: str, redis: int
) -> tuple[ManagedProcess, int]:
    standin = workdir / "standin.toml"
    standin.write_text(
        standin_toml(f"redis://127.0.0.1:{redis}/0").replace(
            "[redis]\n", '[redis]\ncommand_deadline = "1s"\n', 1
        )
    )
    iso = free_port()
    doc = {
        "gateway": {"listen": f"127.0.0.1:{free_port()}", "instance": "gw-iso-scan", "drain_timeout": "3s"},
        **PLAINTEXT,
        "iso8583_listen": {"listen": f"127.0.0.1:{iso}"},
        "routing": {"attempt_timeout": "200ms"},
        "outlier": {"consecutive_failures": 2, "max_ejection_share": 1.0},
        "standin": {"config": str(standin), "sqlite_path": str(workdir / "gw-iso-scan.sqlite3")},
        "settlement": {"rate_per_s": 2000, "lease_ttl": "2s", "advise_timeout": "500ms", "block": "100ms"},
        **observed_pools(endpoint, free_port(), sims),
    }
    config = workdir / "gateway.toml"
    config.write_text(to_toml(doc))
    port = int(doc["gateway"]["listen"].rsplit(":", 1)[1])  # type: ignore[index]
    proc = start_authgw(workdir, "gw-iso-scan", ["serve", "--config", str(config)], port, env=FAST_EXPORT)
    wait_for_port(iso)
    return proc, iso


async def drive(iso: int, sims: dict[str, ManagedProcess]) -> dict[str, int]:
    """Issuer path, stand-in path, a reversal, a malformed and an unmappable message; then settlement."""
    counts = {}
    replies = await exchange(iso, [authorization(100 + i) for i in range(3)])
    counts["issuer approvals"] = sum(r.text(39) == "00" for r in replies)
    for sim in sims.values():
        sim.signal(signal.SIGSTOP)
    try:
        standin = [authorization(200 + i) for i in range(3)]
        replies = await exchange(iso, standin)
        counts["stand-in approvals"] = sum(r.text(39) == "00" and 38 in r for r in replies)
        original = standin[0]
        reverse = {n: original.fields[n] for n in (2, 3, 4, 7, 32, 41, 42, 49)}
        reverse |= {
            11: "000300",
            37: rrn_of("000300"),
            90: OriginalData("0100", original.text(11), original.text(7)).encode(),
        }
        broken = authorization(301).encode(SPEC).replace(b"000000012345", b"00000001X345")
        unmapped = authorization(302).with_fields({22: "991"})  # decodes; no channel has entry mode 99
        replies = await exchange(iso, [Message("0400", reverse), broken, unmapped])
        answers = {(r.mti, r.text(11)): r.text(39) for r in replies}  # in any order
        counts["reversal"] = answers.get(("0410", "000300")) == "00"
        counts["format errors"] = answers.get(("0110", "000301")) == answers.get(("0110", "000302")) == "30"
    finally:
        for sim in sims.values():
            sim.signal(signal.SIGCONT)

    async def advised() -> None:
        async with SimControl(sims["a1"].address) as control:
            books = {b.request_id: b for b in (await control.books()).books}
        assert sum(b.approval_advices for b in books.values()) >= 2, "stand-in approvals not settled yet"

    await assert_eventually(advised, timeout_s=60.0, interval_s=0.5)
    return counts


async def test_sensitive_data_is_never_journaled_advised_logged_or_traced(
    tmp_path: Path, redis: ManagedProcess
) -> None:
    """After the issuer path, stand-in, a reversal, a format error and settlement, no output holds them."""
    out = Outputs()
    async with OtlpReceiver() as receiver:
        sims = {
            m: traced_sim(tmp_path, pool, m, receiver.endpoint)
            for pool, m in (("primary", "a1"), ("secondary", "b1"))
        }
        gateway, iso = gateway_process(tmp_path, sims, receiver.endpoint, redis.port)
        try:
            out.counts = await drive(iso, sims)
            await asyncio.sleep(1.0)  # one more export interval: the last spans and metrics
        finally:
            gateway.stop()
            for sim in sims.values():
                sim.stop()
        out.spans = [(f"trace export {i}", p) for i, p in enumerate(receiver.trace_payloads)]
        out.metrics = [(f"metric export {i}", p) for i, p in enumerate(receiver.metric_payloads)]
        out.counts["spans"] = len(receiver.spans())
    out.redis = await dump_redis(redis.port)
    admin = Redis(port=redis.port)
    await admin.save()  # an RDB beside the AOF: both are reloaded and scanned
    await admin.aclose()
    redis.stop()
    await persistence(tmp_path, out)
    collect_files(out, tmp_path)
    assert out.counts["issuer approvals"] == 3 and out.counts["stand-in approvals"] >= 2, out.counts
    assert out.counts["reversal"] and out.counts["format errors"] and out.counts["spans"], out.counts
    findings = []
    for category in (out.logs, out.spans, out.metrics, out.redis, out.files):
        for where, blob in category:
            data = blob if isinstance(blob, bytes) else blob.encode()
            findings += [
                f"{name} in {where}"
                for name, forms in sensitive_forms().items()
                if any(f in data for f in forms)
            ]
    assert not findings, findings
