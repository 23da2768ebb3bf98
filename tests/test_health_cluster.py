"""A 3-member etcd cluster with one member killed: the watcher and the agent carry on through the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from helpers import assert_eventually
from test_health_support import HealthHost, unique_root

from chaos.processes import ManagedProcess, start_etcd_cluster, wait_for_port
from health.agent import AgentConfig, HealthAgent
from health.errors import EtcdUnavailable
from health.etcd import Endpoint, EtcdClient
from health.keys import KeyLayout
from health.membership import MemberInfo
from health.watcher import MembershipWatcher


async def serving(member: ManagedProcess) -> None:
    """Wait until `member` serves requests (it listens before the cluster has a leader)."""
    async with EtcdClient([Endpoint("127.0.0.1", member.port)], request_timeout_s=0.5) as c:

        async def answers() -> None:
            try:
                await c.revision()
            except EtcdUnavailable as exc:
                raise AssertionError(str(exc)) from exc

        await assert_eventually(answers, timeout_s=15)


async def put_retrying(client: EtcdClient, key: str, value: bytes) -> None:
    async def attempt() -> None:
        try:
            await client.put(key, value)
        except EtcdUnavailable as exc:
            raise AssertionError(str(exc)) from exc

    await assert_eventually(attempt, timeout_s=10)


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[ManagedProcess]]:
    members = start_etcd_cluster(tmp_path_factory.mktemp("cluster"), 3)
    for member in members:
        await serving(member)
    yield members
    for member in members:
        member.kill()  # throwaway data: no need for a graceful (slower) stop


@pytest.fixture
async def first_member_killed(cluster: list[ManagedProcess]) -> AsyncIterator[list[ManagedProcess]]:
    """Yields the cluster; the test kills member 0 (every client's first endpoint); it rejoins after."""
    yield cluster
    if not cluster[0].alive():
        cluster[0].start(wait_port=False)
        wait_for_port(cluster[0].port, 15.0, cluster[0].proc)
        await serving(cluster[0])


@pytest.fixture
async def host() -> AsyncIterator[HealthHost]:
    h = await HealthHost().start()
    yield h
    await h.stop()


def cluster_client(cluster: list[ManagedProcess]) -> EtcdClient:
    return EtcdClient([Endpoint("127.0.0.1", m.port) for m in cluster], request_timeout_s=0.5)


def expect_members(watcher: MembershipWatcher, expected: list[str]) -> Callable[[], None]:
    def check() -> None:
        assert list(watcher.snapshot().pool("primary").members) == expected

    return check


async def test_watcher_follows_changes_after_its_etcd_member_dies(
    first_member_killed: list[ManagedProcess],
) -> None:
    """Killing the member the watcher streams from: it moves to another member and misses nothing."""
    cluster = first_member_killed
    layout = KeyLayout(unique_root())
    async with (
        cluster_client(cluster) as c,
        MembershipWatcher(c, key_root=layout.root) as watcher,
        EtcdClient([Endpoint("127.0.0.1", cluster[2].port)], request_timeout_s=2) as writer,
    ):
        await writer.put(layout.member("primary", "h1"), MemberInfo(address="h1:7000").to_json())
        await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=3)
        assert c.endpoint.port == cluster[0].port

        cluster[0].kill()
        # The test's own writes may land in the leader election that the kill can start.
        await put_retrying(writer, layout.member("primary", "h2"), MemberInfo(address="h2:7000").to_json())
        await put_retrying(writer, layout.drain("primary"), b"{}")

        def caught_up() -> None:
            snapshot = watcher.snapshot()
            assert snapshot.etcd_connected
            assert list(snapshot.pool("primary").members) == ["h1", "h2"]
            assert snapshot.pool("primary").drained

        await assert_eventually(caught_up, timeout_s=5)


async def test_agent_keeps_updating_membership_after_its_etcd_member_dies(
    first_member_killed: list[ManagedProcess], host: HealthHost
) -> None:
    """With member 0 dead, the agent still revokes on failed probes and re-registers on good ones."""
    cluster = first_member_killed
    root = unique_root()
    config = AgentConfig(
        pool="primary",
        member="h1",
        address=host.address,
        probe_interval_s=0.2,
        probe_timeout_s=0.15,
        key_root=root,
    )
    stop = asyncio.Event()
    async with (
        cluster_client(cluster) as c,
        MembershipWatcher(c, key_root=root) as watcher,
        cluster_client(cluster) as agent_client,
    ):
        task = asyncio.create_task(HealthAgent(agent_client, config).run(stop))
        try:
            await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=3)
            cluster[0].kill()
            await host.set_serving(False)
            await assert_eventually(expect_members(watcher, []), timeout_s=5)
            await host.set_serving(True)
            await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=5)
            assert agent_client.endpoint.port != cluster[0].port
        finally:
            stop.set()
            await task
