"""Hostile input through running gateways: 10,000 random and mutated messages, never a crash status.

Two in-process gateways with stand-in on the session's Redis: one routes to an issuer simulator
process, the other has no live issuer (stand-in decides). Each hypothesis example draws a request
(field values from hypothesis: unicode, extreme integers, any timestamp) and a seed; the seed
derives a batch of 100 variants of it (wire-level mutations, hostile field values, random bytes,
repeated ids, oversized messages), sent at once as raw bytes to Authorize and Reverse of both
gateways. Every answer must be OK or a refusal the contract names, and both gateways still answer
a valid request and their health check after each batch. The failure message lists each offending
message's bytes, so a failing batch is reproducible without shrinking it.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_edge_support import (
    AUTHORIZE,
    REVERSE,
    bytes_field,
    raw_call,
    running_gateway,
    standin_doc,
    valid_request_bytes,
    varint,
)

from authgw.v1 import authorization_pb2 as pb
from authgw.validation import COUNTRIES, TRANSACTION_CURRENCIES
from chaos.processes import ManagedProcess, free_port, start_authgw
from tests.helpers import PAN_AMEX, PAN_MC, PAN_VISA

BATCH = 100
BATCHES = 100  # 10,000 messages
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
}
INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
PANS = (PAN_VISA, PAN_MC, PAN_AMEX)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """An issuer simulator process: what the first gateway routes to."""
    port = free_port()
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", "a1"]
    proc = start_authgw(tmp_path_factory.mktemp("fuzz-sim"), "fuzz-a1", args, port)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
async def channels(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess, sim: ManagedProcess
) -> AsyncIterator[tuple[grpc.aio.Channel, grpc.aio.Channel]]:
    """Channels to the issuer-backed gateway and to the stand-in one (one fleet: same stand-in keys)."""
    work = tmp_path_factory.mktemp("fuzz-gw")
    docs = [standin_doc(work, redis_server.port, f"gw-fuzz-{i}") for i in range(2)]
    docs[0]["pools"][0]["members"][0]["address"] = sim.address
    async with (
        running_gateway(docs[0], str(work / "gateway-0.toml")) as issuer_gw,
        running_gateway(docs[1], str(work / "gateway-1.toml")) as standin_gw,
        grpc.aio.insecure_channel(f"127.0.0.1:{issuer_gw.port}") as to_issuers,
        grpc.aio.insecure_channel(f"127.0.0.1:{standin_gw.port}") as to_standin,
    ):
        yield to_issuers, to_standin


def _mostly(valid: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` 29 times in 30: most drawn requests pass validation and reach issuers or stand-in."""
    return st.integers(0, 29).flatmap(lambda n: wild if n == 0 else valid)


_PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=64)
_DIGITS = st.text("0123456789", max_size=20)
_NEAR_NOW = st.floats(-20 * 3600, 20 * 3600).map(lambda off: (int(time.time() + off), 0))
_TIMESTAMPS = st.none() | _mostly(_NEAR_NOW, st.tuples(INT64, INT32))


def _stamp(target: Timestamp, value: tuple[int, int] | None) -> None:
    if value is not None:
        target.seconds, target.nanos = value


@st.composite
def authorizations(draw: st.DrawFn) -> pb.AuthorizeRequest:
    """An AuthorizeRequest: validated fields mostly valid, free fields any unicode or integer."""
    request = pb.AuthorizeRequest(
        request_id=draw(_mostly(_PRINTABLE, st.text(max_size=80))),
        acquirer_id=draw(_mostly(st.sampled_from(["1001", "1002"]), _DIGITS)),
        pan=draw(_mostly(st.sampled_from(PANS), _DIGITS)),
        amount_minor=draw(_mostly(st.integers(1, 500_000), INT64)),
        currency=draw(_mostly(st.sampled_from(sorted(TRANSACTION_CURRENCIES)), st.text(max_size=4))),
        mcc=draw(_mostly(st.sampled_from(["5411", "6011", "5812"]), st.text(max_size=5))),
        channel=draw(_mostly(st.integers(1, 6), INT32)),
        merchant_id=draw(_mostly(_PRINTABLE, st.text(max_size=80))),
        terminal_id=draw(_mostly(_PRINTABLE, st.text(max_size=80))),
        merchant_country=draw(_mostly(st.sampled_from(sorted(COUNTRIES)), st.text(max_size=3))),
        pin_verified=draw(st.booleans()),
        cardholder_authenticated=draw(st.booleans()),
        processing_code=draw(st.text(max_size=8)),
        card_expiry=draw(st.text(max_size=6)),
        stan=draw(st.text(max_size=8)),
        rrn=draw(st.text(max_size=14)),
        local_date=draw(st.text(max_size=6)),
        local_time=draw(st.text(max_size=8)),
        pos_entry_mode=draw(st.text(max_size=4)),
        merchant_name=draw(st.text(max_size=40)),
        merchant_city=draw(st.text(max_size=20)),
        authorization_type=draw(st.integers(0, 1) | INT32),  # type: ignore[arg-type]
        verification=pb.Verification(
            card_verification_value=draw(INT32),  # type: ignore[arg-type]  # open enums: any int32
            chip_cryptogram=draw(INT32),  # type: ignore[arg-type]
            pin=draw(INT32),  # type: ignore[arg-type]
        ),
        sensitive=pb.SensitiveData(pin_block=draw(st.binary(max_size=16)), track2=draw(st.text(max_size=40))),
    )
    _stamp(request.transmitted_at, draw(_TIMESTAMPS))
    return request


@st.composite
def reversals(draw: st.DrawFn) -> pb.ReverseRequest:
    """A ReverseRequest: mostly valid, sometimes extreme."""
    request = pb.ReverseRequest(
        acquirer_id=draw(_mostly(st.sampled_from(["1001", "1002"]), _DIGITS)),
        reversal_id=draw(_mostly(_PRINTABLE, st.text(max_size=80))),
        original_request_id=draw(_mostly(_PRINTABLE, st.text(max_size=80))),
        pan=draw(_mostly(st.sampled_from(PANS), _DIGITS)),
        final_amount_minor=draw(_mostly(st.integers(0, 500_000), INT64)),
        original_amount_minor=draw(_mostly(st.integers(0, 500_000), INT64)),
        reason=draw(_mostly(st.integers(1, 6), INT32)),
        currency=draw(_mostly(st.sampled_from(["EUR", "USD", "JPY"]), st.text(max_size=4))),
    )
    _stamp(request.transmitted_at, draw(_TIMESTAMPS))
    return request


# Values an attacker or a broken acquirer sends, per field (set on a copy of the drawn request).
_HOSTILE_TEXT = [
    "",
    "\x00",
    "\x7f",
    "é" * 70,
    "a" * 65,
    "\u202e",
    "\ufeff",
    "\U0001d7d8\U0001d7d9",
    "{x}",
    "%s%n",
]
_HOSTILE_AMOUNTS = [0, -1, -(2**63), 2**63 - 1, 10**12]
_NOW = int(time.time())  # the module's import: within the window for the whole run
HOSTILE: dict[str, list[Any]] = {
    "request_id": _HOSTILE_TEXT,
    "reversal_id": _HOSTILE_TEXT,
    "original_request_id": _HOSTILE_TEXT,
    "acquirer_id": ["", "0", "٤٥", "1" * 12, "-1"],
    "pan": ["", "4111111111111112", "٤١١١١١١١١١١١١١١١", "4" * 20, "4111 1111 1111 1111"],
    "amount_minor": _HOSTILE_AMOUNTS,
    "final_amount_minor": _HOSTILE_AMOUNTS,
    "original_amount_minor": _HOSTILE_AMOUNTS,
    "currency": ["XXX", "XAU", "XTS", "eur", "€UR", "", "EURO", "E\x00R"],
    "mcc": ["", "٥٤١١", "54111", "-541"],
    "channel": [0, 7, -1, 2**31 - 1],
    "reason": [0, 7, -1],
    "merchant_country": ["ZZ", "F1", "XK", "fr", "FRA", "🇫🇷", "AA", "QM"],
    "merchant_id": _HOSTILE_TEXT,
    "terminal_id": _HOSTILE_TEXT,
    "transmitted_at": [
        (-(10**12), 0),
        (0, 0),
        (-62_135_596_800, 0),
        (253_402_300_799, 999_999_999),
        (2**63 - 1, 0),
        (_NOW, -1),
        (_NOW, 10**9),
    ],
    "forwarded_at": [(_NOW, 0)],  # the gateway's to set
}
_WIRE = ("flip", "truncate", "duplicate", "wire_type", "varint", "insert", "delete")


def _wire_mutation(rnd: random.Random, raw: bytearray) -> None:
    """One change to the bytes: bit flip, cut, duplicated slice, wrong wire type, huge varint, insert..."""
    at = rnd.randint(0, len(raw))
    action = rnd.choice(_WIRE)
    if action == "truncate":
        del raw[at:]
    elif action == "duplicate":  # repeated scalars (last wins), merged sub-messages
        raw += raw[at : at + rnd.randint(1, 40)]
    elif action == "varint":  # a known field with a 10-byte varint, or an overlong 11-byte one
        huge = rnd.choice([2**64 - 1, 2**63, 2**63 - 1, 2**32])
        tail = b"\xff" * 10 + b"\x01" if rnd.random() < 0.3 else varint(huge)
        raw[at:at] = varint(rnd.randint(1, 26) << 3) + tail
    elif action == "insert":
        raw[at:at] = rnd.randbytes(rnd.randint(1, 12))
    elif at < len(raw) and action == "wire_type":  # wire types 6 and 7 do not exist
        raw[at] = raw[at] & 0xF8 | rnd.randint(0, 7)
    elif at < len(raw) and action == "delete":
        del raw[at : at + rnd.randint(1, 8)]
    elif at < len(raw):
        raw[at] ^= 1 << rnd.randint(0, 7)


def _hostile_fields(rnd: random.Random, message: Message) -> None:
    """Mostly one field given a hostile value, sometimes two or three (only the fields the message has)."""
    fields = [name for name in HOSTILE if name in message.DESCRIPTOR.fields_by_name]
    for name in rnd.sample(fields, rnd.choice([1, 1, 1, 1, 1, 1, 1, 2, 2, 3])):
        value = rnd.choice(HOSTILE[name])
        if name.endswith("_at"):
            _stamp(getattr(message, name), value)
        else:
            setattr(message, name, value)


def _free_fields(rnd: random.Random, message: pb.AuthorizeRequest) -> None:
    """Fields no rule checks, passed to issuers as they are: any text, any enum number, any bytes."""
    for name in ("merchant_name", "merchant_city", "processing_code", "stan", "rrn", "card_expiry"):
        if rnd.random() < 0.5:
            setattr(message, name, rnd.choice(_HOSTILE_TEXT))
    message.authorization_type = rnd.choice([0, 1, -1, 2**31 - 1])  # type: ignore[assignment]
    message.verification.pin = rnd.choice([0, 1, 2, 3, -7])  # type: ignore[assignment]
    message.sensitive.pin_block = rnd.randbytes(rnd.randint(0, 16))
    message.sensitive.chip_data = rnd.randbytes(rnd.randint(0, 255))


def variant(
    rnd: random.Random, base: pb.AuthorizeRequest | pb.ReverseRequest, other: bytes, tag: str, oversized: bool
) -> bytes:
    """One message derived from `base`: as drawn, odd free fields, hostile fields, mutated bytes, random..."""
    message = copy.deepcopy(base)
    kind = rnd.choice(["as_is", "free", "fields", "fields", "wire", "wire", "random", "merged", "reused"])
    id_field = "request_id" if isinstance(message, pb.AuthorizeRequest) else "reversal_id"
    if kind != "reused":  # a new id; "reused" keeps the drawn one with other content: ALREADY_EXISTS
        setattr(message, id_field, tag)
    elif isinstance(message, pb.AuthorizeRequest):
        message.amount_minor = rnd.randint(1, 500_000)
    else:
        message.final_amount_minor = rnd.randint(0, 500_000)
    if kind == "fields":
        _hostile_fields(rnd, message)
    elif kind == "free" and isinstance(message, pb.AuthorizeRequest):
        _free_fields(rnd, message)
    raw = bytearray(message.SerializeToString())
    if kind == "wire":
        for _ in range(rnd.randint(1, 4)):
            _wire_mutation(rnd, raw)
    elif kind == "random":
        raw = bytearray(rnd.randbytes(rnd.randint(0, 300)))
    elif kind == "merged":  # two messages back to back parse as one: fields of both, last wins
        raw += other
    if oversized and rnd.random() < 0.05:
        raw += bytes_field(999, b"\x00" * rnd.randint(16_400, 40_000))
    return bytes(raw)


class Batch:
    """BATCH messages (method, bytes, which gateway); its repr is its seed, not 100 messages' bytes."""

    def __init__(self, seed: int, messages: list[tuple[str, bytes, int]]) -> None:
        self.seed = seed
        self.messages = messages

    def __repr__(self) -> str:
        return f"Batch(seed={self.seed}, {len(self.messages)} messages)"


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """BATCH messages derived from one drawn request of each kind and a seed."""
    authorization, reversal = draw(authorizations()), draw(reversals())
    seed, oversized = draw(st.integers(0, 2**32)), draw(st.integers(0, 4)) == 0
    rnd = random.Random(seed)
    out = []
    for i in range(BATCH):
        method, base, other = (
            (REVERSE, reversal, authorization.SerializeToString())
            if rnd.random() < 0.25
            else (AUTHORIZE, authorization, reversal.SerializeToString())
        )
        out.append((method, variant(rnd, base, other, f"fz-{seed}-{i}", oversized), rnd.randint(0, 1)))
    return Batch(seed, out)


async def _still_serving(channel: grpc.aio.Channel, tag: str) -> None:
    code, answer = await raw_call(channel, AUTHORIZE, valid_request_bytes(tag))
    assert code == grpc.StatusCode.OK, answer
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@settings(
    max_examples=BATCHES,
    deadline=None,
    # No shrinking: a batch is derived from its seed, so a smaller seed is another batch, and every
    # step would resend a hundred messages. The failure lists the offending messages' bytes instead.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(batch=batches())
async def test_hostile_messages_get_no_crash_status(
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel], batch: Batch
) -> None:
    """100 batches of 100 at once: every answer OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED or ALREADY_EXISTS."""
    sent = batch.messages
    answers = await asyncio.gather(*(raw_call(channels[gw], method, data) for method, data, gw in sent))
    crashes = [
        (method, gw, code.name, answer, data.hex())
        for (method, data, gw), (code, answer) in zip(sent, answers, strict=True)
        if code not in ALLOWED
    ]
    assert crashes == []
    tag = f"fz-alive-{time.monotonic_ns()}"
    await _still_serving(channels[0], tag)
    await _still_serving(channels[1], tag)
