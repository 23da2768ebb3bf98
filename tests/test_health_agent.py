"""The health agent against a real etcd and a real gRPC host: registration, fall, rise, death, outages."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from helpers import assert_eventually
from test_health_support import CuttableProxy, HealthHost, unique_root

from chaos.processes import ManagedProcess, start_authgw
from health.agent import AgentConfig, HealthAgent
from health.etcd import Endpoint, EtcdClient
from health.watcher import MembershipWatcher

PROBE_INTERVAL_S = 0.2
FALL = 2


@pytest.fixture
async def host() -> AsyncIterator[HealthHost]:
    h = await HealthHost().start()
    yield h
    await h.stop()


@asynccontextmanager
async def watching(etcd_port: int, root: str) -> AsyncIterator[MembershipWatcher]:
    """A gateway's view of `root`."""
    async with (
        EtcdClient([Endpoint("127.0.0.1", etcd_port)]) as client,
        MembershipWatcher(client, key_root=root) as watcher,
    ):
        yield watcher


@asynccontextmanager
async def running_agent(etcd_port: int, config: AgentConfig) -> AsyncIterator[HealthAgent]:
    """An in-process agent, stopped (and its lease revoked) on exit."""
    stop = asyncio.Event()
    async with EtcdClient([Endpoint("127.0.0.1", etcd_port)], request_timeout_s=0.5) as client:
        agent = HealthAgent(client, config)
        task = asyncio.create_task(agent.run(stop))
        try:
            yield agent
        finally:
            stop.set()
            await task


def agent_config(host: HealthHost, root: str, **overrides: object) -> AgentConfig:
    settings: dict[str, object] = {
        "pool": "primary",
        "member": "h1",
        "address": host.address,
        "zone": "par1",
        "weight": 2,
        "probe_interval_s": PROBE_INTERVAL_S,
        "probe_timeout_s": 0.15,
        "fall": FALL,
        "rise": 2,
        "key_root": root,
    }
    settings.update(overrides)
    return AgentConfig(**settings)  # type: ignore[arg-type]


def expect_members(watcher: MembershipWatcher, expected: list[str]) -> Callable[[], None]:
    """A check for assert_eventually: the primary pool has exactly `expected` members."""

    def check() -> None:
        assert list(watcher.snapshot().pool("primary").members) == expected

    return check


async def test_member_appears_once_the_agent_registers(etcd_server: ManagedProcess, host: HealthHost) -> None:
    """A healthy host's member shows up in the gateway's membership with what the agent registered."""
    root = unique_root()
    async with (
        watching(etcd_server.port, root) as watcher,
        running_agent(etcd_server.port, agent_config(host, root)),
    ):

        def registered() -> None:
            info = watcher.snapshot().pool("primary").members.get("h1")
            assert info is not None
            assert (info.address, info.zone, info.weight) == (host.address, "par1", 2)

        await assert_eventually(registered, timeout_s=3)


async def test_member_leaves_when_the_host_reports_not_serving(
    etcd_server: ManagedProcess, host: HealthHost
) -> None:
    """fall NOT_SERVING answers revoke the lease: the member leaves within fall x interval + 1 s."""
    root = unique_root()
    async with (
        watching(etcd_server.port, root) as watcher,
        running_agent(etcd_server.port, agent_config(host, root)),
    ):
        await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=3)
        await host.set_serving(False)
        await assert_eventually(expect_members(watcher, []), timeout_s=FALL * PROBE_INTERVAL_S + 1)


async def test_member_leaves_when_the_host_stops_answering(
    etcd_server: ManagedProcess, host: HealthHost
) -> None:
    """A host that refuses connections is out within fall x interval + 1 s, not a lease TTL later."""
    root = unique_root()
    config = agent_config(host, root, ttl_s=30)  # a long TTL: only the revoke can make this fast
    async with watching(etcd_server.port, root) as watcher, running_agent(etcd_server.port, config):
        await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=3)
        await host.stop()
        await assert_eventually(expect_members(watcher, []), timeout_s=FALL * PROBE_INTERVAL_S + 1)


async def test_member_comes_back_after_rise_good_probes(
    etcd_server: ManagedProcess, host: HealthHost
) -> None:
    """A host that recovers is registered again, on a new lease."""
    root = unique_root()
    async with (
        watching(etcd_server.port, root) as watcher,
        running_agent(etcd_server.port, agent_config(host, root)) as agent,
    ):
        await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=3)
        await host.set_serving(False)
        await assert_eventually(expect_members(watcher, []), timeout_s=2)
        assert not agent.registered
        await host.set_serving(True)
        await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=2)


async def test_agent_re_registers_when_etcd_lost_its_lease_during_a_partition(
    etcd_server: ManagedProcess, host: HealthHost
) -> None:
    """Cut from etcd longer than its TTL, the agent keeps probing and writes a new lease once back."""
    root = unique_root()
    proxy = await CuttableProxy(etcd_server.port).start()
    try:
        async with (
            watching(etcd_server.port, root) as watcher,
            running_agent(proxy.port, agent_config(host, root, ttl_s=1)) as agent,
        ):
            await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=3)
            proxy.cut()
            await assert_eventually(expect_members(watcher, []), timeout_s=3)  # the lease expired
            assert agent.host_up
            proxy.restore()
            await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=5)
    finally:
        await proxy.close()


def start_agent_process(tmp_path: Path, etcd: ManagedProcess, host: HealthHost, root: str) -> ManagedProcess:
    args = ["health-agent", "--etcd", f"http://127.0.0.1:{etcd.port}", "--pool", "primary", "--member", "h1"]
    args += [
        "--address",
        host.address,
        "--ttl",
        "2",
        "--key-root",
        root,
        "--etcd-insecure",
        "--probe-insecure",
    ]
    return start_authgw(tmp_path, "agent", args, port=etcd.port, wait_port=False)


async def test_member_leaves_within_ttl_when_the_agent_is_killed(
    tmp_path: Path, etcd_server: ManagedProcess, host: HealthHost
) -> None:
    """SIGKILL leaves the lease unrefreshed: the member is out within TTL + 1 s."""
    root = unique_root()
    async with watching(etcd_server.port, root) as watcher:
        agent = start_agent_process(tmp_path, etcd_server, host, root)
        try:
            await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=10)
            agent.kill()
            killed_at = time.monotonic()
            await assert_eventually(expect_members(watcher, []), timeout_s=2 + 1)
            assert time.monotonic() - killed_at > 0.5, "the member must leave through lease expiry"
        finally:
            agent.stop()


async def test_sigterm_revokes_the_lease_and_exits_zero(
    tmp_path: Path, etcd_server: ManagedProcess, host: HealthHost
) -> None:
    """On SIGTERM the agent revokes its lease (member out at once) and exits 0."""
    root = unique_root()
    async with watching(etcd_server.port, root) as watcher:
        agent = start_agent_process(tmp_path, etcd_server, host, root)
        try:
            await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=10)
            agent.signal(signal.SIGTERM)
            await assert_eventually(expect_members(watcher, []), timeout_s=1)
            assert agent.proc is not None
            assert await asyncio.to_thread(agent.proc.wait, 5) == 0
            assert "revoked" in agent.tail_log()
        finally:
            agent.stop()
