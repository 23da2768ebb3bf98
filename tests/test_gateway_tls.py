"""Mutual TLS and access control on a real gateway, with issuer simulators serving TLS too.

The gateway runs in-process with the development CA's certificates (chaos.pki); two
issuer simulators (one per pool) require the gateway's client certificate. What a bank's
security review asks, each shown from the caller's side:
- a plaintext client, one without a certificate, with one of another CA or an expired
  one, fail the handshake (UNAVAILABLE) and reach no issuer;
- a certificate not on the allowlist, or used for another acquirer_id, is PERMISSION_DENIED,
  counted, and reaches no issuer; a revoked one too, once the deny list file says so;
- a rotated server certificate is served to new connections without a restart;
- the gateway checks the issuer's name and presents its own certificate, which also rotates.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from authgw.security.devca import LEAVES, Authority, write_file
from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.pki import DevPki
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.sim_control import SimControl
from gateway.app import Gateway
from gateway.config import parse_config
from tests.gateway_fixtures import auth_request

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """The development CA and certificates, private to this module (rotation rewrites files)."""
    return DevPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def sims(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ManagedProcess]]:
    """One TLS issuer simulator per pool (issuer-primary / issuer-secondary certificates)."""
    workdir = tmp_path_factory.mktemp("tls-sims")
    procs: dict[str, ManagedProcess] = {}
    for pool in ("primary", "secondary"):
        port = free_port()
        args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", pool, "--member", f"{pool}-1"]
        procs[pool] = start_authgw(workdir, pool, [*args, *pki.issuer_sim_args(pool)], port)
    yield procs
    for proc in procs.values():
        proc.stop()


def _doc(pki: DevPki, sims: dict[str, ManagedProcess], **pool_overrides: Any) -> dict[str, Any]:
    return {
        "gateway": {"listen": f"127.0.0.1:{free_port()}", "instance": "gw-tls", "drain_timeout": "1s"},
        "routing": {"attempt_timeout": "400ms"},
        **pki.gateway_sections(),
        "pools": [
            {
                "name": pool,
                "priority": i + 1,
                "server_name": f"{pool}.issuer.authgw.test",
                "members": [{"name": f"{pool}-1", "address": sims[pool].address}],
                **pool_overrides,
            }
            for i, pool in enumerate(("primary", "secondary"))
        ],
    }


@pytest.fixture
async def gateway(pki: DevPki, sims: dict[str, ManagedProcess], tmp_path: Path) -> AsyncIterator[Gateway]:
    doc = _doc(pki, sims)
    deny = tmp_path / "denied.txt"
    deny.write_text("# revoked client certificates\n")
    doc["tls"]["deny_list"] = str(deny)
    gw = Gateway(parse_config(doc, str(tmp_path / "gateway.toml")))
    await gw.start()
    yield gw
    await gw.close()


def _channel(gw: Gateway, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    target = f"127.0.0.1:{gw.port}"
    if credentials is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, credentials)


def _credentials(pki: DevPki, leaf: str | None, *, ca: Path | None = None) -> grpc.ChannelCredentials:
    """Client credentials with leaf `leaf`'s certificate (None: no client certificate)."""
    root = (ca or pki.ca).read_bytes()
    if leaf is None:
        return grpc.ssl_channel_credentials(root_certificates=root)
    f = pki.files(leaf)
    return grpc.ssl_channel_credentials(root, f.key.read_bytes(), f.cert.read_bytes())


async def _authorize(channel: grpc.aio.Channel, **fields: Any) -> pb.AuthorizeResponse:
    response: pb.AuthorizeResponse = await pb_grpc.AuthorizationStub(channel).Authorize(
        auth_request(**fields), timeout=5
    )
    return response


async def _issuer_saw(pki: DevPki, sim: ManagedProcess) -> int:
    """Authorize calls the simulator has answered (through its control service, over TLS)."""
    async with SimControl(sim.address, tls=pki.files("operator")) as ctl:
        report = await ctl.report()
    return int(report.authorize_calls)


async def test_acquirer_with_its_certificate_is_answered_by_the_issuer(gateway: Gateway, pki: DevPki) -> None:
    """ACQ001's certificate, acquirer_id 1001: mutual TLS on both links, the issuer answers."""
    async with _channel(gateway, pki.acquirer_credentials("1001")) as channel:
        answer = await _authorize(channel, request_id="tls-ok-1")
    assert answer.source == pb.ISSUER and answer.pool == "primary" and answer.response_code == "00"


@pytest.mark.parametrize(
    ("leaf", "why"),
    [
        ("plaintext", "no TLS at all"),
        (None, "TLS without a client certificate"),
        ("rogue-acquirer-ACQ001", "a certificate of another CA"),
        ("expired-acquirer-ACQ001", "an expired certificate"),
    ],
)
async def test_handshake_refused(
    gateway: Gateway, pki: DevPki, sims: dict[str, ManagedProcess], leaf: str | None, why: str
) -> None:
    """Each of these fails the handshake: the caller sees UNAVAILABLE and no issuer is called."""
    before = await _issuer_saw(pki, sims["primary"])
    credentials = None if leaf == "plaintext" else _credentials(pki, leaf)
    async with _channel(gateway, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _authorize(channel, request_id=f"tls-refused-{leaf}")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, why
    assert await _issuer_saw(pki, sims["primary"]) == before


async def test_certificate_not_on_the_allowlist_is_permission_denied(
    gateway: Gateway, pki: DevPki, sims: dict[str, ManagedProcess]
) -> None:
    """A valid fleet certificate that is no acquirer's (the operator's): PERMISSION_DENIED, counted."""
    before = await _issuer_saw(pki, sims["primary"])
    async with _channel(gateway, _credentials(pki, "operator")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _authorize(channel, request_id="tls-not-allowed")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.AuthorizationStub(channel).Reverse(
                pb.ReverseRequest(
                    acquirer_id="1001",
                    reversal_id="tls-rev-not-allowed",
                    original_request_id="tls-not-allowed",
                    pan=auth_request().pan,
                    currency="EUR",
                    reason=pb.TERMINAL_TIMEOUT,
                ),
                timeout=5,
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert gateway.access.denied["not_allowed"] == 2
    assert await _issuer_saw(pki, sims["primary"]) == before


async def test_acquirer_id_must_be_the_certificates(
    gateway: Gateway, pki: DevPki, sims: dict[str, ManagedProcess]
) -> None:
    """ACQ001's certificate asking as acquirer 1002 is refused; ACQ002's own is answered."""
    before = await _issuer_saw(pki, sims["primary"])
    async with _channel(gateway, pki.acquirer_credentials("1001")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _authorize(channel, request_id="tls-mismatch", acquirer_id="1002")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "1002" in (info.value.details() or "")
    assert gateway.access.denied["acquirer_mismatch"] == 1
    assert await _issuer_saw(pki, sims["primary"]) == before
    async with _channel(gateway, pki.acquirer_credentials("1002")) as channel:
        answer = await _authorize(channel, request_id="tls-mismatch", acquirer_id="1002")
    assert answer.source == pb.ISSUER


async def test_revoked_certificate_refused_once_the_deny_list_says_so(gateway: Gateway, pki: DevPki) -> None:
    """Adding ACQ002's serial to the deny list file refuses it within seconds, without a restart."""
    serial = x509.load_pem_x509_certificate(pki.acquirer_files("1002").cert.read_bytes()).serial_number
    async with _channel(gateway, pki.acquirer_credentials("1002")) as channel:
        assert (await _authorize(channel, request_id="tls-rev-1", acquirer_id="1002")).source == pb.ISSUER
        deny = Path(gateway.cfg.security.deny_list or "")
        await asyncio.to_thread(deny.write_text, f"# revoked client certificates\nserial:{serial:x}\n")
        for attempt in range(50):
            try:
                await _authorize(channel, request_id=f"tls-rev-{attempt + 2}", acquirer_id="1002")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the revoked certificate was still accepted after 5 s")
    assert gateway.access.denied["revoked"] >= 1


def _served_serial(port: int, pki: DevPki) -> int:
    """The serial of the certificate the gateway presents to a new TLS connection."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    acquirer = pki.acquirer_files("1001")
    context.load_cert_chain(acquirer.cert, acquirer.key)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _reissue(pki: DevPki, leaf: str, *, ca: str = "ca") -> int:
    """A new certificate and key for `leaf`, written over its files (key first, as a careless operator
    would: the half-rotated pair must be survived); returns the new serial."""
    spec = next(s for s in LEAVES if s.name == leaf)
    authority = Authority.load(pki.directory / f"{ca}.crt", pki.directory / f"{ca}.key")
    issued = authority.issue(spec)
    write_file(pki.directory / f"{leaf}.key", issued.key_pem, 0o600)
    write_file(pki.directory / f"{leaf}.crt", issued.cert_pem, 0o644)
    return x509.load_pem_x509_certificate(issued.cert_pem).serial_number


async def test_rotated_server_certificate_served_to_new_connections(gateway: Gateway, pki: DevPki) -> None:
    """Rewrite the gateway's certificate on disk: new connections get it within seconds, no restart,
    and a connection opened before keeps working."""
    old = await asyncio.to_thread(_served_serial, gateway.port, pki)
    async with _channel(gateway, pki.acquirer_credentials("1001")) as before:
        assert (await _authorize(before, request_id="tls-rot-0")).source == pb.ISSUER
        new = _reissue(pki, "gateway")
        assert new != old
        for _ in range(60):
            if await asyncio.to_thread(_served_serial, gateway.port, pki) == new:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the new server certificate was not served within 6 s")
        assert (await _authorize(before, request_id="tls-rot-1")).source == pb.ISSUER
    async with _channel(gateway, pki.acquirer_credentials("1001")) as after:
        assert (await _authorize(after, request_id="tls-rot-2")).source == pb.ISSUER


async def test_issuer_with_the_wrong_name_gets_no_request(
    pki: DevPki, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """A pool whose hosts must be `secondary.issuer...` refuses the primary's certificate: the
    request is declined 91 by the gateway (no stand-in here), never answered by that host."""
    doc = _doc(pki, sims)
    doc["pools"] = doc["pools"][:1]
    doc["pools"][0]["server_name"] = "secondary.issuer.authgw.test"
    before = await _issuer_saw(pki, sims["primary"])
    gw = Gateway(parse_config(doc, str(tmp_path / "gateway.toml")))
    await gw.start()
    try:
        async with _channel(gw, pki.acquirer_credentials("1001")) as channel:
            answer = await _authorize(channel, request_id="tls-wrong-name")
    finally:
        await gw.close()
    assert answer.source != pb.ISSUER and answer.response_code == "91"
    assert await _issuer_saw(pki, sims["primary"]) == before


async def test_issuer_client_certificate_rotates_without_a_restart(
    pki: DevPki, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Started with a client certificate the issuers do not trust (rogue CA), the gateway gets no
    issuer answer; the files replaced by a fleet certificate, members reconnect and the issuer
    answers, without a restart."""
    own = tmp_path / "client"
    own.mkdir()
    rogue = Authority.load(pki.directory / "rogue-ca.crt", pki.directory / "rogue-ca.key")
    spec = next(s for s in LEAVES if s.name == "gateway-client")
    issued = rogue.issue(spec)
    write_file(own / "client.key", issued.key_pem, 0o600)
    write_file(own / "client.crt", issued.cert_pem, 0o644)
    doc = _doc(pki, sims)
    doc["issuer_tls"] = {"cert": str(own / "client.crt"), "key": str(own / "client.key"), "ca": str(pki.ca)}
    gw = Gateway(parse_config(doc, str(tmp_path / "gateway.toml")))
    await gw.start()
    try:
        async with _channel(gw, pki.acquirer_credentials("1001")) as channel:
            refused = await _authorize(channel, request_id="tls-client-rot-0")
            assert refused.source != pb.ISSUER
            shutil.copy(pki.files("gateway-client").key, own / "client.key")
            shutil.copy(pki.files("gateway-client").cert, own / "client.crt")
            for attempt in range(40):
                answer = await _authorize(channel, request_id=f"tls-client-rot-{attempt + 1}")
                if answer.source == pb.ISSUER:
                    break
                await asyncio.sleep(0.25)
            else:
                pytest.fail("members did not reconnect with the new client certificate within 10 s")
    finally:
        await gw.close()


async def test_reflection_is_off_unless_configured(
    pki: DevPki, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Server reflection lists the services to any caller: UNIMPLEMENTED by default, served with
    `reflection = true`."""
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    async def services(gw: Gateway) -> list[str]:
        async with _channel(gw, pki.acquirer_credentials("1001")) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            async for answer in stub.ServerReflectionInfo(iter([request]), timeout=5):
                return [s.name for s in answer.list_services_response.service]
        return []

    for enabled in (False, True):
        doc = _doc(pki, sims)
        doc["gateway"]["reflection"] = enabled
        gw = Gateway(parse_config(doc, str(tmp_path / "gateway.toml")))
        await gw.start()
        try:
            if enabled:
                assert "authgw.v1.Authorization" in await services(gw)
            else:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await services(gw)
                assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await gw.close()
