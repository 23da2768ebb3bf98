"""Helpers for the edge tests: protobuf wire bytes written by hand, raw calls, a recording issuer host."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc

from authgw.v1 import authorization_pb2 as pb
from chaos.pki import PLAINTEXT
from chaos.processes import free_port
from chaos.topology import standin_toml
from gateway.app import Gateway
from gateway.config import parse_config
from tests.gateway_fixtures import auth_request
from tests.helpers import PAN_VISA

AUTHORIZE = "/authgw.v1.Authorization/Authorize"
REVERSE = "/authgw.v1.Authorization/Reverse"
DEADLINE_S = 5.0
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative value (negative int64s: add 2**64 first)."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def wire_field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One field on the wire: its tag, then the payload as given (length prefix included by the caller)."""
    return varint(number << 3 | wire_type) + payload


def bytes_field(number: int, data: bytes) -> bytes:
    """A length-delimited field (string, bytes or sub-message) with `data` as its content."""
    return wire_field(number, LENGTH_DELIMITED, varint(len(data)) + data)


def reverse_request(**overrides: Any) -> pb.ReverseRequest:
    """A valid full reversal; keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "acquirer_id": "1001",
        "reversal_id": "rv-1",
        "original_request_id": "req-1",
        "pan": PAN_VISA,
        "final_amount_minor": 0,
        "reason": pb.CARDHOLDER_CANCEL,
        "currency": "EUR",
    }
    fields.update(overrides)
    return pb.ReverseRequest(**fields)


def sent_at(offset_s: float) -> dict[str, Any]:
    """A transmitted_at `offset_s` from now, as constructor keywords."""
    at = time.time() + offset_s
    return {"transmitted_at": {"seconds": int(at), "nanos": 0}}


async def raw_call(
    channel: grpc.aio.Channel, method: str, data: bytes
) -> tuple[grpc.StatusCode, bytes | str]:
    """Send `data` as the request's bytes: (OK, the answer's bytes) or (the error code, its details)."""
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        method
    )  # no serializers: bytes go out and come back as they are
    try:
        answer = await call(data, timeout=DEADLINE_S)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, answer


class RecordingIssuer:
    """An IssuerHost that keeps the bytes of every request it receives and approves them all."""

    def __init__(self) -> None:
        self.authorizations: dict[str, bytes] = {}  # request_id -> the bytes as received
        self.reversals: dict[str, bytes] = {}  # reversal_id -> the bytes as received
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def authorize(self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        request = pb.AuthorizeRequest.FromString(data)
        self.authorizations[request.request_id] = data
        return pb.AuthorizeResponse(
            request_id=request.request_id, decision=pb.APPROVED, response_code="00", approval_code="A12345",
            source=pb.ISSUER, decision_id=f"rec-{request.request_id}",
        ).SerializeToString()  # fmt: skip

    async def reverse(self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        request = pb.ReverseRequest.FromString(data)
        self.reversals[request.reversal_id] = data
        return pb.ReverseResponse(
            reversal_id=request.reversal_id, status=pb.APPLIED, response_code="00", source=pb.ISSUER
        ).SerializeToString()

    def handler(self) -> grpc.GenericRpcHandler:
        methods: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
            "Authorize": grpc.unary_unary_rpc_method_handler(self.authorize),
            "Reverse": grpc.unary_unary_rpc_method_handler(self.reverse),
        }
        return grpc.method_handlers_generic_handler("authgw.v1.IssuerHost", methods)


@asynccontextmanager
async def recording_issuer() -> AsyncIterator[RecordingIssuer]:
    """A RecordingIssuer served by a real grpc.aio server on a free loopback port."""
    issuer = RecordingIssuer()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((issuer.handler(),))
    issuer.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield issuer
    finally:
        await server.stop(grace=None)


def standin_doc(workdir: Path, redis_port: int, instance: str) -> dict[str, Any]:
    """A gateway config whose only pool is a closed port: every valid request is decided in stand-in.

    Gateways made from the same `workdir` share the stand-in file, hence its keys (a fleet).
    """
    standin = workdir / "standin.toml"
    if not standin.exists():
        standin.write_text(standin_toml(f"redis://127.0.0.1:{redis_port}/0"))
    return {
        "gateway": {"listen": f"127.0.0.1:{free_port()}", "instance": instance},
        **PLAINTEXT,
        "routing": {"attempt_timeout": "100ms"},
        "standin": {"config": str(standin), "sqlite_path": str(workdir / f"{instance}.sqlite3")},
        "pools": [{"name": "primary", "priority": 1, "members": [{"name": "a1", "address": "127.0.0.1:1"}]}],
    }


@asynccontextmanager
async def running_gateway(doc: Mapping[str, Any], source: str) -> AsyncIterator[Gateway]:
    """An in-process gateway from a config document, closed on exit."""
    gateway = Gateway(parse_config(doc, source))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.close()


def valid_request_bytes(request_id: str) -> bytes:
    """A valid AuthorizeRequest, serialized."""
    return auth_request(request_id=request_id).SerializeToString()
