"""etcd SIGKILLed and restarted under a running watcher and agent (each test has its own etcd)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from helpers import assert_eventually
from test_health_support import CuttableProxy, HealthHost, unique_root

from chaos.processes import ManagedProcess, start_etcd
from health.agent import AgentConfig, HealthAgent
from health.errors import EtcdUnavailable
from health.etcd import Endpoint, EtcdClient
from health.keys import KeyLayout
from health.membership import MemberInfo
from health.watcher import MembershipWatcher


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[ManagedProcess]:
    proc = start_etcd(tmp_path / "etcd")
    yield proc
    proc.stop()


@pytest.fixture
async def host() -> AsyncIterator[HealthHost]:
    h = await HealthHost().start()
    yield h
    await h.stop()


async def serving(client: EtcdClient) -> None:
    """Wait until a restarted etcd answers (it accepts connections before it serves)."""

    async def answers() -> None:
        try:
            await client.revision()
        except EtcdUnavailable as exc:
            raise AssertionError(str(exc)) from exc

    await assert_eventually(answers, timeout_s=10)


def client_for(port: int) -> EtcdClient:
    return EtcdClient([Endpoint("127.0.0.1", port)], request_timeout_s=0.5)


def expect_members(watcher: MembershipWatcher, expected: list[str]) -> Callable[[], None]:
    def check() -> None:
        snapshot = watcher.snapshot()
        assert snapshot.etcd_connected
        assert list(snapshot.pool("primary").members) == expected

    return check


def agent_config(host: HealthHost, root: str) -> AgentConfig:
    return AgentConfig(
        pool="primary",
        member="h1",
        address=host.address,
        ttl_s=1,
        probe_interval_s=0.2,
        probe_timeout_s=0.15,
        key_root=root,
    )


async def test_watcher_keeps_membership_while_etcd_is_down_then_catches_up(etcd: ManagedProcess) -> None:
    """etcd SIGKILLed: last membership kept, etcd_connected False; changes made meanwhile arrive later."""
    layout = KeyLayout(unique_root())
    proxy = await CuttableProxy(etcd.port).start()  # holds the watcher off until the test has written
    try:
        async with (
            client_for(etcd.port) as writer,
            client_for(proxy.port) as c,
            MembershipWatcher(c, key_root=layout.root) as watcher,
        ):
            await writer.put(layout.member("primary", "h1"), MemberInfo(address="h1:7000").to_json())
            await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=2)

            etcd.kill()

            def kept_while_down() -> None:
                snapshot = watcher.snapshot()
                assert not snapshot.etcd_connected
                assert list(snapshot.pool("primary").members) == ["h1"]

            await assert_eventually(kept_while_down, timeout_s=3)
            proxy.cut()
            etcd.start()  # same data directory, same port
            await serving(writer)
            await writer.delete(layout.member("primary", "h1"))
            await writer.put(layout.member("primary", "h2"), MemberInfo(address="h2:7000").to_json())
            await writer.put(layout.drain("primary"), b"{}")
            proxy.restore()

            await assert_eventually(expect_members(watcher, ["h2"]), timeout_s=5)
            assert watcher.snapshot().pool("primary").drained
    finally:
        await proxy.close()


async def test_agent_keeps_its_member_alive_across_an_etcd_restart(
    etcd: ManagedProcess, host: HealthHost
) -> None:
    """After etcd restarts, the agent's keep-alives resume: the member outlives its 1 s TTL several times."""
    root = unique_root()
    stop = asyncio.Event()
    async with (
        client_for(etcd.port) as c,
        MembershipWatcher(c, key_root=root) as watcher,
        client_for(etcd.port) as agent_client,
    ):
        agent = HealthAgent(agent_client, agent_config(host, root))
        task = asyncio.create_task(agent.run(stop))
        try:
            await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=3)
            etcd.kill()

            def agent_noticed() -> None:
                assert not agent.etcd_connected

            await assert_eventually(agent_noticed, timeout_s=3)
            etcd.start()

            def agent_back() -> None:
                assert agent.etcd_connected and agent.registered

            await assert_eventually(agent_back, timeout_s=5)
            deadline = time.monotonic() + 3.0  # three TTLs: only keep-alives can hold the key that long
            while time.monotonic() < deadline:
                kv = await c.get(KeyLayout(root).member("primary", "h1"))
                assert kv is not None
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await task


async def test_agent_re_registers_when_etcd_comes_back_empty(
    tmp_path: Path, etcd: ManagedProcess, host: HealthHost
) -> None:
    """etcd rebuilt empty on the same port: the agent re-creates lease and key, the watcher re-reads."""
    root = unique_root()
    stop = asyncio.Event()
    async with (
        client_for(etcd.port) as c,
        MembershipWatcher(c, key_root=root) as watcher,
        client_for(etcd.port) as agent_client,
    ):
        task = asyncio.create_task(HealthAgent(agent_client, agent_config(host, root)).run(stop))
        try:
            await assert_eventually(expect_members(watcher, ["h1"]), timeout_s=3)
            for i in range(20):  # push the old cluster's revision well past what the new one will have
                await c.put(f"{root}/filler/{i}", b"x")
            await assert_eventually(lambda: _revision_at_least(watcher, 20))
            etcd.kill()
            shutil.rmtree(tmp_path / "etcd" / "etcd.data")
            etcd.start()

            async def re_registered() -> None:
                assert await c.get(KeyLayout(root).member("primary", "h1")) is not None
                snapshot = watcher.snapshot()
                assert snapshot.etcd_connected and snapshot.revision < 20, "a view of the new cluster"
                assert list(snapshot.pool("primary").members) == ["h1"]

            await assert_eventually(re_registered, timeout_s=6)
        finally:
            stop.set()
            await task


def _revision_at_least(watcher: MembershipWatcher, revision: int) -> None:
    assert watcher.snapshot().revision >= revision
