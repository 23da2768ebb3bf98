"""The health agent's probe over mutual TLS, against a real grpc.aio health server with server credentials."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import assert_eventually
from test_health_support import HealthHost, tls_credentials

from authgw.security import TlsFiles, TransportSecurity
from authgw.security.devca import write_file
from chaos.pki import DevPki
from health import agent
from health.probe import HealthProbe

PRIMARY = "primary.issuer.authgw.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return DevPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def host(pki: DevPki) -> AsyncIterator[HealthHost]:
    """An issuer host of pool primary serving Health over TLS, requiring fleet client certificates."""
    host = await HealthHost().start(credentials=tls_credentials(pki.files("issuer-primary")))
    yield host
    await host.stop()


async def probe_once(
    address: str, files: TlsFiles | None, server_name: str | None = PRIMARY
) -> tuple[bool, str]:
    security = TransportSecurity.plaintext() if files is None else TransportSecurity.mutual_tls(files)
    probe = HealthProbe(address, timeout_s=2.0, security=security, server_name=server_name)
    try:
        result = await probe.check()
    finally:
        await probe.close()
    return result.ok, result.detail


async def test_probe_with_the_agents_certificate_and_the_pools_name_passes(
    host: HealthHost, pki: DevPki
) -> None:
    """agent-primary's certificate, the fleet CA and primary's name: SERVING."""
    assert await probe_once(host.address, pki.files("agent-primary")) == (True, "SERVING")


async def test_probe_by_ip_address_passes_on_the_ip_san(host: HealthHost, pki: DevPki) -> None:
    """Without a server name the host dialled (127.0.0.1) must be in the certificate: devca puts it there."""
    ok, _ = await probe_once(host.address, pki.files("agent-primary"), server_name=None)
    assert ok


async def test_probe_fails_when_the_host_has_another_pools_name(host: HealthHost, pki: DevPki) -> None:
    """A host whose certificate is not secondary's fails a probe that expects secondary."""
    ok, detail = await probe_once(host.address, pki.files("agent-primary"), "secondary.issuer.authgw.test")
    assert not ok and "UNAVAILABLE" in detail


async def test_probe_fails_in_plaintext_and_with_a_rogue_certificate(host: HealthHost, pki: DevPki) -> None:
    """A TLS host answers neither a plaintext probe nor one whose certificate another CA signed."""
    assert not (await probe_once(host.address, None))[0]
    rogue = pki.files("rogue-acquirer-ACQ001")
    assert not (await probe_once(host.address, rogue))[0]


async def test_probe_follows_a_rotated_certificate(host: HealthHost, pki: DevPki, tmp_path: Path) -> None:
    """Files that held a refused certificate are replaced by a good one: the probe passes, no restart."""
    mine = TlsFiles(cert=tmp_path / "agent.crt", key=tmp_path / "agent.key", ca=tmp_path / "ca.crt")
    rogue = pki.files("rogue-acquirer-ACQ001")
    shutil.copyfile(rogue.cert, mine.cert)
    shutil.copyfile(rogue.key, mine.key)
    shutil.copyfile(pki.ca, mine.ca)
    probe = HealthProbe(
        host.address, timeout_s=1.0, security=TransportSecurity.mutual_tls(mine), server_name=PRIMARY
    )
    try:
        await probe.follow_certificates()
        assert not (await probe.check()).ok
        good = pki.files("agent-primary")
        write_file(mine.key, good.key.read_bytes(), 0o600)
        write_file(mine.cert, good.cert.read_bytes(), 0o644)

        async def passes() -> None:
            assert (await probe.check()).ok

        await assert_eventually(passes, timeout_s=6, interval_s=0.3)
    finally:
        await probe.close()


def test_agent_command_requires_probe_tls_or_an_explicit_plaintext_flag(
    pki: DevPki, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --probe-cert (and without --probe-insecure) health-agent exits 2 naming the flag."""
    argv = [
        "health-agent",
        "--etcd-insecure",
        "--pool",
        "primary",
        "--member",
        "a1",
        "--address",
        "127.0.0.1:1",
    ]
    with pytest.raises(SystemExit) as exited:
        agent.main(argv)
    assert exited.value.code == 2
    assert "--probe-cert missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        agent.main([*argv, "--probe-insecure", "--probe-cert", str(pki.files("agent-primary").cert)])
    assert "--probe-insecure and --probe-cert given" in capsys.readouterr().err
