"""Shared builders for the security tests (no tests here): dev certificates, an echo server, raw TLS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from cryptography import x509

from authgw.security import (
    Allowlist,
    DenyList,
    PeerIdentityReader,
    TlsFiles,
)
from authgw.security.devca import LEAVES, Authority, generate, write_file

SERVICE = "authgw.test.Echo"
ACQ001_URI = "spiffe://authgw.test/acquirer/ACQ001"
ACQ002_URI = "spiffe://authgw.test/acquirer/ACQ002"
DEADLINE_S = 3.0


def make_certs(root: Path) -> Path:
    """A fresh development CA tree under `root`/certs."""
    out = root / "certs"
    generate(out)
    return out


def files(certs: Path, name: str, ca: str = "ca") -> TlsFiles:
    """The TlsFiles of leaf `name`, trusting CA `ca`."""
    return TlsFiles(cert=certs / f"{name}.crt", key=certs / f"{name}.key", ca=certs / f"{ca}.crt")


def copy_files(certs: Path, name: str, into: Path) -> TlsFiles:
    """A private copy of leaf `name` (and the fleet CA) that a test may overwrite."""
    into.mkdir(parents=True, exist_ok=True)
    for suffix in ("crt", "key"):
        shutil.copyfile(certs / f"{name}.{suffix}", into / f"{name}.{suffix}")
    shutil.copyfile(certs / "ca.crt", into / "ca.crt")
    return files(into, name)


def reissue(certs: Path, name: str, target: TlsFiles) -> int:
    """Issue a new certificate for leaf `name` from the fleet CA, rename it over `target`; its serial."""
    spec = next(s for s in LEAVES if s.name == name)
    issued = Authority.load(certs / "ca.crt", certs / "ca.key").issue(spec)
    write_file(target.key, issued.key_pem, 0o600)
    write_file(target.cert, issued.cert_pem, 0o644)
    return x509.load_pem_x509_certificate(issued.cert_pem).serial_number


def expiring_copy(certs: Path, name: str, into: Path, seconds: float) -> tuple[TlsFiles, datetime]:
    """A private copy of leaf `name` whose certificate expires `seconds` from now; and that time."""
    mine = copy_files(certs, name, into)
    spec = next(s for s in LEAVES if s.name == name)
    expires = datetime.now(UTC) + timedelta(seconds=seconds)
    short = Authority.load(certs / "ca.crt", certs / "ca.key").issue(spec, now=expires - timedelta(days=825))
    write_file(mine.key, short.key_pem, 0o600)
    write_file(mine.cert, short.cert_pem, 0o644)
    return mine, expires


@dataclass
class Guard:
    """What the echo servicer checks per call (the owner's pattern from identity.py)."""

    allowlist: Allowlist
    deny_list: DenyList | None = None


class Echo:
    """A servicer that answers with what it knows of the caller: its identity and its connection."""

    def __init__(self, guard: Guard | None = None) -> None:
        self.reader = PeerIdentityReader()
        self.guard = guard

    async def who(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        identity = self.reader.from_context(context)
        if self.guard is not None:
            decision = self.guard.allowlist.check(identity, request.decode())
            if decision.allowed and identity is not None and self.guard.deny_list is not None:
                decision = self.guard.deny_list.check(identity)
            if not decision.allowed:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, decision.reason)
        answer: dict[str, Any] = {"peer": context.peer(), "identity": None}
        if identity is not None:
            answer["identity"] = {
                "cn": identity.common_name,
                "uris": list(identity.uris),
                "dns": list(identity.dns_names),
                "serial": identity.serial,
            }
        return json.dumps(answer).encode()

    async def slow(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await asyncio.sleep(float(request.decode()))
        return await self.who(b"", context)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Who": grpc.unary_unary_rpc_method_handler(self.who),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            },
        )


@asynccontextmanager
async def echo_server(
    credentials: grpc.ServerCredentials | None, guard: Guard | None = None
) -> AsyncIterator[int]:
    """A real grpc.aio server on a free loopback port (plaintext when `credentials` is None); its port."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((Echo(guard).handler(),))
    address = "127.0.0.1:0"
    port = (
        server.add_insecure_port(address)
        if credentials is None
        else server.add_secure_port(address, credentials)
    )
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


async def who(channel: grpc.aio.Channel, acquirer_id: str = "") -> dict[str, Any]:
    """Call Who; the servicer's JSON answer."""
    reply = await channel.unary_unary(f"/{SERVICE}/Who")(acquirer_id.encode(), timeout=DEADLINE_S)
    answer: dict[str, Any] = json.loads(reply)
    return answer


async def slow(channel: grpc.aio.Channel, seconds: float) -> dict[str, Any]:
    """Call Slow: answers like Who after `seconds`."""
    reply = await channel.unary_unary(f"/{SERVICE}/Slow")(str(seconds).encode(), timeout=DEADLINE_S + seconds)
    answer: dict[str, Any] = json.loads(reply)
    return answer


def client_context(client: TlsFiles, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A stdlib TLS client context with our client certificate, speaking h2 like grpc."""
    ctx = ssl.create_default_context(cafile=str(client.ca))
    ctx.load_cert_chain(str(client.cert), str(client.key))
    ctx.set_alpn_protocols(["h2"])
    if max_version is not None:
        allow_old_tls(ctx, max_version)
    return ctx


def allow_old_tls(ctx: ssl.SSLContext, max_version: ssl.TLSVersion | None = None) -> None:
    """Let `ctx` speak TLS 1.1 (up to `max_version`), which OpenSSL 3 refuses at its default level."""
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated is the point: we test its refusal
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        if max_version is not None:
            ctx.maximum_version = max_version


async def served_certificate(
    port: int, ctx: ssl.SSLContext, server_name: str = "localhost"
) -> x509.Certificate:
    """Open a NEW TLS connection and return the certificate the server presented on it."""
    async with asyncio.timeout(DEADLINE_S):
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=server_name)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der)
    finally:
        writer.close()
        async with asyncio.timeout(DEADLINE_S):
            # The server may reset a connection that never spoke h2.
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
