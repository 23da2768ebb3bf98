"""etcd with TLS, client-certificate authentication and `auth enable`: each role inside and outside its keys.

One etcd for the module, set up the way an operator would: `python -m health.admin etcd-auth` as
etcd's root user (devca leaf etcd-root, CN=root) for pools primary/secondary, gateways gw-1/gw-2,
operators operator/operator2 and the reader authgw-settle. Every client is identified by the CN of
its devca certificate.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from aetcd import rpc
from helpers import assert_eventually
from test_health_support import HealthHost, tls_credentials

from authgw.audit import AuditRecord
from authgw.security import TlsFiles, TransportSecurity
from chaos.pki import DevPki
from chaos.processes import ManagedProcess, start_authgw, start_etcd
from health import admin
from health.agent import AgentConfig, HealthAgent
from health.endpoints import Endpoint
from health.errors import EtcdPermissionDenied, EtcdUnavailable, InvalidName
from health.etcd import EtcdClient, KeyValue
from health.keys import KeyLayout
from health.lease import LeasedKey
from health.membership import MemberInfo
from health.probe import HealthProbe
from health.registration import GatewayRegistration
from health.watcher import MembershipWatcher

LAYOUT = KeyLayout()
FLEET = [
    *("--pool", "primary", "--pool", "secondary"),
    *("--gateway", "gw-1", "--gateway", "gw-2"),
    *("--operator", "operator", "--operator", "operator2"),
    *("--reader", "authgw-settle"),
]
ISSUER_NAME = "primary.issuer.authgw.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return DevPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory, pki: DevPki) -> Iterator[ManagedProcess]:
    """etcd serving https only and requiring a client certificate from the fleet CA."""
    proc = start_etcd(tmp_path_factory.mktemp("etcd-auth"), tls=pki.files("etcd"), client_cert_auth=True)
    yield proc
    proc.stop()


def etcd_flags(etcd: ManagedProcess, pki: DevPki, leaf: str) -> list[str]:
    f = pki.files(leaf)
    url = f"https://127.0.0.1:{etcd.port}"
    return ["--etcd", url, "--etcd-cert", str(f.cert), "--etcd-key", str(f.key), "--etcd-ca", str(f.ca)]


def admin_process(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m health.admin ARGV` as an operator runs it."""
    command = [sys.executable, "-m", "health.admin", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def first_setup(etcd: ManagedProcess, pki: DevPki) -> str:
    """etcd-auth run once as root on the fresh etcd; its output."""
    done = admin_process("etcd-auth", *FLEET, *etcd_flags(etcd, pki, "etcd-root"))
    assert done.returncode == 0, done.stderr
    return done.stdout


def client_of(etcd: ManagedProcess, pki: DevPki, leaf: str, *, ca: str = "ca") -> EtcdClient:
    """An etcd client presenting devca leaf `leaf` (its CN is the etcd user), trusting CA `ca`."""
    f = pki.files(leaf)
    files = TlsFiles(cert=f.cert, key=f.key, ca=pki.directory / f"{ca}.crt")
    endpoint = Endpoint("127.0.0.1", etcd.port, "https")
    return EtcdClient([endpoint], security=TransportSecurity.mutual_tls(files), request_timeout_s=2.0)


@pytest.fixture
async def connect(
    etcd: ManagedProcess, pki: DevPki, first_setup: str
) -> AsyncIterator[dict[str, EtcdClient]]:
    """Clients by devca leaf, made on demand and closed after the test (auth is enabled by then)."""
    clients: dict[str, EtcdClient] = {}

    class Clients(dict[str, EtcdClient]):
        def __missing__(self, leaf: str) -> EtcdClient:
            clients[leaf] = client_of(etcd, pki, leaf)
            return clients[leaf]

    yield Clients()
    for client in clients.values():
        await client.close()


async def audit_records(root: EtcdClient) -> list[AuditRecord]:
    result = await root.get_prefix(LAYOUT.audit_prefix)
    return sorted((AuditRecord.from_json(kv.value) for kv in result.kvs), key=lambda r: r.record_id)


async def run_admin(etcd: ManagedProcess, pki: DevPki, leaf: str, *argv: str) -> int:
    """One admin command in a thread (it runs its own loop), with `leaf`'s certificate."""
    return await asyncio.to_thread(admin.main, [*argv, *etcd_flags(etcd, pki, leaf)])


# -- setting auth up -------------------------------------------------------------------------


def test_etcd_auth_creates_users_without_password_and_is_idempotent(
    first_setup: str, etcd: ManagedProcess, pki: DevPki
) -> None:
    """The first run adds root and every role; a second run with the same fleet changes nothing."""
    assert "added user root (no password: certificate only)" in first_setup
    assert "granted authgw-agent-primary: write     /authgw/pools/primary/members/*" in first_setup
    again = admin_process("etcd-auth", *FLEET, *etcd_flags(etcd, pki, "etcd-root"))
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stdout, again.stdout


def test_etcd_auth_runs_only_as_root(first_setup: str, etcd: ManagedProcess, pki: DevPki) -> None:
    """With an operator's certificate etcd-auth stops before asking etcd anything, naming the CN."""
    done = admin_process("etcd-auth", *FLEET, *etcd_flags(etcd, pki, "operator"))
    assert done.returncode == 2
    assert "'operator'" in done.stderr and "CN is root" in done.stderr


def test_etcd_auth_refuses_an_instance_named_like_another_ones_worker() -> None:
    """gw-1-west would fall under gw-1's worker keys (gw-1-w*): the plan refuses the pair."""
    done = admin_process("etcd-auth", "--gateway", "gw-1", "--gateway", "gw-1-west", "--plan")
    assert done.returncode == 2
    assert "'gw-1-west' looks like a worker of 'gw-1'" in done.stderr


# -- health agents ---------------------------------------------------------------------------


async def test_agent_registers_on_a_lease_and_keeps_it_alive(
    connect: dict[str, EtcdClient], pki: DevPki
) -> None:
    """agent-primary, probing its host over TLS, holds its member key past the TTL, and revokes it."""
    host = await HealthHost().start(credentials=tls_credentials(pki.files("issuer-primary")))
    probe = HealthProbe(
        host.address,
        timeout_s=1.0,
        security=TransportSecurity.mutual_tls(pki.files("agent-primary")),
        server_name=ISSUER_NAME,
    )
    config = AgentConfig(pool="primary", member="a1", address=host.address, ttl_s=1, rise=1)
    key = LAYOUT.member("primary", "a1")
    operator = connect["operator"]
    stop = asyncio.Event()
    task = asyncio.create_task(HealthAgent(connect["agent-primary"], config, probe=probe).run(stop))
    try:
        first = await assert_eventually(lambda: _present(operator, key), timeout_s=5)
        loop = asyncio.get_running_loop()
        held_until = loop.time() + 2.5  # 2.5 TTLs: only keep-alives keep it there
        while loop.time() < held_until:
            assert (await _present(operator, key)).lease == first.lease
            await asyncio.sleep(0.2)
        assert MemberInfo.from_json(first.value).address == host.address
    finally:
        stop.set()
        await task
        await host.stop()
    assert await operator.get(key) is None  # revoked: the agent may revoke its own lease


async def _present(client: EtcdClient, key: str) -> KeyValue:
    kv = await client.get(key)
    assert kv is not None, f"{key} not in etcd"
    return kv


async def test_agent_is_refused_outside_its_pools_member_keys(connect: dict[str, EtcdClient]) -> None:
    """agent-primary may not write secondary's members, a drain flag or the mode, nor read membership."""
    agent = connect["agent-primary"]
    refused = {
        LAYOUT.member("secondary", "b1"): lambda k: agent.put(k, b"{}"),
        LAYOUT.drain("primary"): lambda k: agent.put(k, b"{}"),
        LAYOUT.mode(): lambda k: agent.put(k, b"force-standin"),
        LAYOUT.prefix: agent.get_prefix,
    }
    for key, attempt in refused.items():
        with pytest.raises(EtcdPermissionDenied) as caught:
            await attempt(key)
        assert key in str(caught.value) and "'agent-primary'" in str(caught.value)


async def test_a_watch_outside_the_users_roles_fails_instead_of_hanging(
    connect: dict[str, EtcdClient],
) -> None:
    """etcd answers a refused watch "created and canceled": the client raises permission denied."""
    async with asyncio.timeout(5):
        with pytest.raises(EtcdPermissionDenied, match="agent-primary"):
            async with connect["agent-primary"].watch_prefix(LAYOUT.prefix, 1):
                pass


# -- gateways --------------------------------------------------------------------------------


async def test_gateway_reads_membership_and_registers_itself_and_its_workers(
    connect: dict[str, EtcdClient],
) -> None:
    """gw-1 loads and watches /authgw/, and holds /authgw/gateways/gw-1 and its worker's key."""
    gateway = connect["gateway-client-gw-1"]
    b1 = LAYOUT.member("secondary", "b1")
    member = LeasedKey(connect["agent-secondary"], b1, lambda: b'{"address":"h:1"}')

    def sees_member() -> None:
        view = watcher.snapshot().pools.get("secondary")
        assert view is not None and "b1" in view.members

    async with (
        member,
        MembershipWatcher(gateway) as watcher,
        GatewayRegistration(gateway, "gw-1", "127.0.0.1:9001") as own,
        GatewayRegistration(gateway, "gw-1-w0", "127.0.0.1:9001") as worker,
    ):
        member.hold()
        await assert_eventually(sees_member, timeout_s=5)
        await asyncio.wait_for(own.wait_registered(), 5)
        await asyncio.wait_for(worker.wait_registered(), 5)
        gateways = (await connect["operator"].get_prefix(f"{LAYOUT.root}/gateways/")).kvs
        assert {kv.key for kv in gateways} >= {LAYOUT.gateway("gw-1"), LAYOUT.gateway("gw-1-w0")}


async def test_gateway_is_refused_outside_its_own_key(connect: dict[str, EtcdClient]) -> None:
    """gw-1 may not write gw-2's key (nor gw-10's), a drain flag, the mode or a member."""
    gateway = connect["gateway-client-gw-1"]
    for key in (
        LAYOUT.gateway("gw-2"),
        LAYOUT.gateway("gw-10"),
        LAYOUT.drain("primary"),
        LAYOUT.mode(),
        LAYOUT.member("primary", "rogue"),
    ):
        with pytest.raises(EtcdPermissionDenied) as caught:
            await gateway.put(key, b"{}")
        assert key in str(caught.value) and "'authgw-gateway-gw-1'" in str(caught.value)


async def test_reader_reads_the_membership_and_writes_nothing(connect: dict[str, EtcdClient]) -> None:
    """authgw-settle (a settlement worker) reads /authgw/ but may not set the mode."""
    reader = connect["settle"]
    await reader.get_prefix(LAYOUT.prefix)
    with pytest.raises(EtcdPermissionDenied, match="authgw-settle"):
        await reader.put(LAYOUT.mode(), b"auto")


# -- operators and the audit -----------------------------------------------------------------


async def test_drain_and_mode_each_leave_one_audit_record_with_the_certificates_cn(
    connect: dict[str, EtcdClient], etcd: ManagedProcess, pki: DevPki
) -> None:
    """operator2 drains then sets the mode: two changes, two records naming operator2, in etcd."""
    root = connect["etcd-root"]
    before = await audit_records(root)
    assert await run_admin(etcd, pki, "operator2", "drain", "secondary") == 0
    assert await root.get(LAYOUT.drain("secondary")) is not None
    drained = [r for r in await audit_records(root) if r not in before]
    assert [(r.action, r.target, r.identity.name, r.identity.source) for r in drained] == [
        ("drain", LAYOUT.drain("secondary"), "operator2", "certificate")
    ]
    assert await run_admin(etcd, pki, "operator2", "mode", "force-standin") == 0
    mode = await root.get(LAYOUT.mode())
    assert mode is not None and mode.value == b"force-standin"
    changed = [r for r in await audit_records(root) if r not in before and r not in drained]
    assert [(r.action, r.identity.name, dict(r.details)) for r in changed] == [
        ("mode", "operator2", {"mode": "force-standin"})
    ]
    assert await run_admin(etcd, pki, "operator2", "undrain", "secondary") == 0
    assert await run_admin(etcd, pki, "operator2", "mode", "auto") == 0


async def test_refused_writes_leave_no_audit_record(
    connect: dict[str, EtcdClient], etcd: ManagedProcess, pki: DevPki, capsys: pytest.CaptureFixture[str]
) -> None:
    """A drain of a pool outside the operator's role, and a mode change by an agent: exit 1, no record."""
    root = connect["etcd-root"]
    before = await audit_records(root)
    assert await run_admin(etcd, pki, "operator", "drain", "tertiary") == 1
    err = capsys.readouterr().err
    assert "permission denied" in err and LAYOUT.drain("tertiary") in err and "'operator'" in err
    assert await run_admin(etcd, pki, "agent-primary", "mode", "force-standin") == 1
    assert "'agent-primary'" in capsys.readouterr().err
    assert await audit_records(root) == before
    assert await root.get(LAYOUT.drain("tertiary")) is None


async def test_an_operator_writes_only_its_own_audit_records(connect: dict[str, EtcdClient]) -> None:
    """operator may not forge a record under operator2's name, nor register a member."""
    operator = connect["operator"]
    for key in (LAYOUT.audit("operator2", "forged"), LAYOUT.member("primary", "rogue")):
        with pytest.raises(EtcdPermissionDenied, match="'operator'"):
            await operator.put(key, b"{}")


async def test_audit_command_lists_the_records(
    connect: dict[str, EtcdClient], etcd: ManagedProcess, pki: DevPki, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit --json` (as an operator) prints the records etcd holds, oldest first."""
    assert await run_admin(etcd, pki, "operator", "drain", "primary") == 0
    assert await run_admin(etcd, pki, "operator", "undrain", "primary") == 0
    capsys.readouterr()
    assert await run_admin(etcd, pki, "operator", "audit", "--json", "--operator", "operator") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["action"], r["identity"]) for r in listed[-2:]] == [
        ("drain", "operator"),
        ("undrain", "operator"),
    ]
    assert {r["identity"] for r in listed} == {"operator"}


# -- clients etcd must refuse ----------------------------------------------------------------


async def test_a_certificate_from_another_ca_is_refused_in_the_handshake(
    etcd: ManagedProcess, pki: DevPki, first_setup: str
) -> None:
    """The rogue CA's client certificate never gets a connection: EtcdUnavailable saying TLS refused."""
    async with client_of(etcd, pki, "rogue-acquirer-ACQ001") as rogue:
        with pytest.raises(EtcdUnavailable, match="TLS refused"):
            await rogue.get(LAYOUT.mode())


async def test_a_client_without_certificate_is_refused(
    etcd: ManagedProcess, pki: DevPki, first_setup: str
) -> None:
    """TLS without a client certificate, and plaintext, fail; an https URL without one is refused early."""
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{etcd.port}", grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rpc.KVStub(channel).Range(rpc.RangeRequest(key=LAYOUT.mode().encode()), timeout=3)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
    async with EtcdClient([Endpoint("127.0.0.1", etcd.port)], request_timeout_s=2.0) as plaintext:
        with pytest.raises(EtcdUnavailable, match="closes plaintext connections"):
            await plaintext.get(LAYOUT.mode())
    with pytest.raises(InvalidName, match="no client certificate is given"):
        EtcdClient([Endpoint("127.0.0.1", etcd.port, "https")])


async def test_a_fleet_certificate_that_is_no_etcd_user_is_refused(connect: dict[str, EtcdClient]) -> None:
    """An acquirer's certificate passes TLS but its CN (ACQ001) is no etcd user: permission denied."""
    with pytest.raises(EtcdPermissionDenied, match="'ACQ001'"):
        await connect["acquirer-ACQ001"].get(LAYOUT.mode())


# -- processes -------------------------------------------------------------------------------


async def test_health_agent_process_over_tls_registers_and_revokes(
    tmp_path: Path, etcd: ManagedProcess, pki: DevPki, connect: dict[str, EtcdClient]
) -> None:
    """`authgw health-agent` over TLS to etcd and to its host: registered, then revoked on SIGTERM."""
    host = await HealthHost().start(credentials=tls_credentials(pki.files("issuer-primary")))
    agent_files = pki.files("agent-primary")
    args = ["health-agent", *etcd_flags(etcd, pki, "agent-primary"), "--pool", "primary", "--member", "p1"]
    args += ["--address", host.address, "--ttl", "2", "--probe-server-name", ISSUER_NAME]
    args += ["--probe-cert", str(agent_files.cert), "--probe-key", str(agent_files.key)]
    args += ["--probe-ca", str(agent_files.ca)]
    agent = start_authgw(tmp_path, "agent", args, port=etcd.port, wait_port=False)
    key = LAYOUT.member("primary", "p1")
    try:
        await assert_eventually(lambda: _present(connect["operator"], key), timeout_s=15)
        agent.signal(signal.SIGTERM)
        assert agent.proc is not None
        assert await asyncio.to_thread(agent.proc.wait, 10) == 0
        assert await connect["operator"].get(key) is None
        assert "PLAINTEXT" not in agent.tail_log(200)
    finally:
        agent.stop()
        await host.stop()


async def test_gateway_watch_resumes_after_an_etcd_restart(
    etcd: ManagedProcess, connect: dict[str, EtcdClient], pki: DevPki
) -> None:
    """After etcd restarts, gw-1's watcher re-watches with reads its role allows and sees a new drain."""
    watcher = MembershipWatcher(connect["gateway-client-gw-1"], max_backoff_s=0.5)
    await watcher.start()
    try:
        await assert_eventually(lambda: _connected(watcher), timeout_s=5)
        etcd.stop()
        await assert_eventually(lambda: _connected(watcher, False), timeout_s=10)
        await asyncio.to_thread(etcd.start)
        await assert_eventually(lambda: _connected(watcher), timeout_s=15)
        async with client_of(etcd, pki, "operator") as operator:
            await operator.put(LAYOUT.drain("secondary"), b"{}")

            def drained() -> None:
                view = watcher.snapshot().pools.get("secondary")
                assert view is not None and view.drained

            try:
                await assert_eventually(drained, timeout_s=10)
            finally:
                await operator.delete(LAYOUT.drain("secondary"))
    finally:
        await watcher.close()


def _connected(watcher: MembershipWatcher, expected: bool = True) -> None:
    assert watcher.snapshot().etcd_connected is expected


def test_etcd_auth_converges_when_the_fleet_shrinks(
    first_setup: str, etcd: ManagedProcess, pki: DevPki
) -> None:
    """Without pool secondary, operators lose its drain key and agent-secondary is listed, not deleted."""
    smaller = [*FLEET[:2], *FLEET[4:]]  # FLEET without "--pool secondary"
    done = admin_process("etcd-auth", *smaller, *etcd_flags(etcd, pki, "etcd-root"))
    assert done.returncode == 0, done.stderr
    assert "revoked authgw-operator: write     /authgw/pools/secondary/drain" in done.stdout
    assert "not in this plan, left alone: user agent-secondary" in done.stdout
    assert "not in this plan, left alone: role authgw-agent-secondary" in done.stdout
    restored = admin_process("etcd-auth", *FLEET, *etcd_flags(etcd, pki, "etcd-root"))
    assert restored.returncode == 0, restored.stderr
    assert "granted authgw-operator: write     /authgw/pools/secondary/drain" in restored.stdout
