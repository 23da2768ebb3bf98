"""Mutual TLS on a real grpc.aio server: who gets in, what the servicer sees, certificate hot reload."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from helpers import assert_eventually
from test_security_support import (
    ACQ001_URI,
    Guard,
    allow_old_tls,
    client_context,
    copy_files,
    echo_server,
    files,
    make_certs,
    reissue,
    served_certificate,
    who,
)

from authgw.security import (
    Allowlist,
    DenyList,
    ServerCertificateReloader,
    TlsFiles,
    load_tls_files,
    secure_channel,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development CA tree for the module."""
    return make_certs(tmp_path_factory.mktemp("security-server"))


@pytest.fixture
def server_files(certs: Path, tmp_path: Path) -> TlsFiles:
    """A private copy of the gateway's server files, which a test may replace."""
    return copy_files(certs, "gateway", tmp_path / "server")


@pytest.fixture
async def reloader(server_files: TlsFiles) -> ServerCertificateReloader:
    """Server credentials over the private copy, checking the files at most every 0.2 s."""
    return ServerCertificateReloader(load_tls_files(server_files), check_interval_s=0.2)


@pytest.fixture
async def port(reloader: ServerCertificateReloader) -> AsyncIterator[int]:
    """A running mutual-TLS echo server; its port."""
    async with echo_server(reloader.credentials()) as p:
        yield p


def target(port: int) -> str:
    return f"127.0.0.1:{port}"


async def test_mutual_tls_call_succeeds_and_servicer_reads_san_and_cn(certs: Path, port: int) -> None:
    """A fleet client certificate gets in; the servicer sees its SAN URI, CN and serial."""
    material = load_tls_files(files(certs, "acquirer-ACQ001"))
    async with secure_channel(target(port), material, server_name="localhost") as channel:
        answer = await who(channel)
    assert answer["identity"] == {"cn": "ACQ001", "uris": [ACQ001_URI], "dns": [], "serial": material.serial}


async def test_plaintext_server_gives_the_servicer_no_identity() -> None:
    """On a plaintext link the identity is None, so an allowlist can only deny."""
    async with echo_server(None) as p, grpc.aio.insecure_channel(target(p)) as channel:
        answer = await who(channel)
    assert answer["identity"] is None


REFUSED = {
    "plaintext": None,
    "no client certificate": "no-cert",
    "certificate from another CA": "rogue-acquirer-ACQ001",
    "expired certificate": "expired-acquirer-ACQ001",
    "server-only certificate as client": "issuer-primary",
}


@pytest.mark.parametrize("client", REFUSED.values(), ids=REFUSED.keys())
async def test_refused_clients_see_unavailable(certs: Path, port: int, client: str | None) -> None:
    """Plaintext, no certificate, a rogue CA's, an expired one or a serverAuth-only one: UNAVAILABLE."""
    ca = (certs / "ca.crt").read_bytes()
    if client is None:
        channel = grpc.aio.insecure_channel(target(port))
    elif client == "no-cert":
        channel = grpc.aio.secure_channel(target(port), grpc.ssl_channel_credentials(ca))
    else:
        # Built by hand: load_tls_files would (rightly) refuse the expired certificate before dialling.
        tls = files(certs, client)
        creds = grpc.ssl_channel_credentials(ca, tls.key.read_bytes(), tls.cert.read_bytes())
        channel = grpc.aio.secure_channel(target(port), creds)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await who(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_rotated_certificate_reaches_new_connections_and_open_ones_keep_working(
    certs: Path, port: int, server_files: TlsFiles, reloader: ServerCertificateReloader
) -> None:
    """Files replaced on disk: new connections get the new certificate within 2 s, no restart."""
    client = files(certs, "acquirer-ACQ001")
    old_serial = reloader.current.serial
    async with secure_channel(target(port), load_tls_files(client), server_name="localhost") as open_channel:
        before = await who(open_channel)
        new_serial = reissue(certs, "gateway", server_files)

        async def new_connections_see_new_certificate() -> None:
            cert = await served_certificate(port, client_context(client))
            assert cert.serial_number == new_serial

        await assert_eventually(new_connections_see_new_certificate, timeout_s=2.0, interval_s=0.1)
        after = await who(open_channel)
    assert new_serial != old_serial
    assert after["peer"] == before["peer"]  # the same TCP connection, still serving calls
    assert reloader.reload_count == 1


async def test_broken_replacement_keeps_the_old_certificate(
    certs: Path,
    port: int,
    server_files: TlsFiles,
    reloader: ServerCertificateReloader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replacement key that does not match is logged and skipped; the old certificate is still served."""
    client = files(certs, "acquirer-ACQ001")
    old_serial = reloader.current.serial
    server_files.key.write_bytes((certs / "acquirer-ACQ002.key").read_bytes())  # the key of another cert

    async def handshake_reports_failure() -> None:
        # The fetcher runs on handshakes only: each new connection drives a check.
        cert = await served_certificate(port, client_context(client))
        assert cert.serial_number == old_serial
        assert reloader.failure_count == 1

    with caplog.at_level(logging.ERROR, logger="authgw.security"):
        await assert_eventually(handshake_reports_failure, timeout_s=2.0, interval_s=0.1)
    assert "does not match" in caplog.text
    async with secure_channel(target(port), load_tls_files(client), server_name="localhost") as channel:
        assert (await who(channel))["identity"]["cn"] == "ACQ001"
    assert reloader.current.serial == old_serial


async def test_fetcher_stats_at_most_once_per_interval(server_files: TlsFiles, certs: Path) -> None:
    """Between checks the fetcher answers "no change" without looking, however many handshakes come."""
    now = [100.0]
    reloader = ServerCertificateReloader(
        load_tls_files(server_files), check_interval_s=1.0, clock=lambda: now[0]
    )
    reissue(certs, "gateway", server_files)
    assert reloader.fetch() is None  # files changed, but the interval has not passed: not even a stat
    now[0] += 0.5
    assert reloader.fetch() is None
    now[0] += 0.6
    assert reloader.fetch() is not None  # first check after the interval: changed, loaded
    now[0] += 1.1
    assert reloader.fetch() is None  # checked again, nothing changed since
    assert reloader.reload_count == 1


async def test_tls_below_1_2_is_refused(certs: Path, port: int) -> None:
    """grpc core refuses a TLS 1.1 client that a permissive TLS server accepts."""
    client = files(certs, "acquirer-ACQ001")
    tls11 = client_context(client, max_version=ssl.TLSVersion.TLSv1_1)
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.load_cert_chain(certs / "gateway.crt", certs / "gateway.key")
    allow_old_tls(permissive)

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    control = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=permissive)
    async with control:  # proves the client really offers TLS 1.1, so the refusal below is the server's
        await served_certificate(control.sockets[0].getsockname()[1], tls11)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await served_certificate(port, tls11)


async def test_servicer_guard_refuses_other_acquirer_and_revoked_certificate(
    certs: Path, reloader: ServerCertificateReloader, tmp_path: Path
) -> None:
    """The per-call pattern end to end: identity -> allowlist -> deny list -> PERMISSION_DENIED."""
    acq1 = load_tls_files(files(certs, "acquirer-ACQ001"))
    acq2 = load_tls_files(files(certs, "acquirer-ACQ002"))
    deny_file = tmp_path / "deny.txt"
    deny_file.write_text(f"serial:{acq2.serial:x}  # revoked for this test\n")
    allow = Allowlist({ACQ001_URI: "ACQ001", "spiffe://authgw.test/acquirer/ACQ002": "ACQ002"})
    async with DenyList(deny_file) as deny, echo_server(reloader.credentials(), Guard(allow, deny)) as p:
        async with secure_channel(target(p), acq1, server_name="localhost") as channel:
            assert (await who(channel, "ACQ001"))["identity"]["cn"] == "ACQ001"
            with pytest.raises(grpc.aio.AioRpcError) as other:
                await who(channel, "ACQ002")
        async with secure_channel(target(p), acq2, server_name="localhost") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as revoked:
                await who(channel, "ACQ002")
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may act as ACQ001, not as 'ACQ002'" in (other.value.details() or "")
    assert revoked.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in (revoked.value.details() or "")
