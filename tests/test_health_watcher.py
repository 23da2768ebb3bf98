"""MembershipWatcher against a real etcd: first read, live changes, listeners, seed, compaction, lifecycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from helpers import assert_eventually
from test_health_support import CuttableProxy, unique_root

from chaos.processes import ManagedProcess, free_port, start_etcd
from health.etcd import Endpoint, EtcdClient
from health.keys import KeyLayout
from health.membership import MemberInfo, Membership, Mode
from health.watcher import MembershipWatcher


@pytest.fixture
async def client(etcd_server: ManagedProcess) -> AsyncIterator[EtcdClient]:
    async with EtcdClient([Endpoint("127.0.0.1", etcd_server.port)]) as c:
        yield c


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[ManagedProcess]:
    """An etcd of the test's own, for what affects every key (compaction)."""
    proc = start_etcd(tmp_path / "etcd")
    yield proc
    proc.stop()


@asynccontextmanager
async def watching(port: int, root: str, **kwargs: object) -> AsyncIterator[MembershipWatcher]:
    async with (
        EtcdClient([Endpoint("127.0.0.1", port)], request_timeout_s=0.5) as c,
        MembershipWatcher(c, key_root=root, **kwargs) as watcher,  # type: ignore[arg-type]
    ):
        yield watcher


async def test_start_loads_existing_membership(client: EtcdClient, etcd_server: ManagedProcess) -> None:
    """Members already in etcd are in the snapshot as soon as start() returns."""
    layout = KeyLayout(unique_root())
    await client.put(layout.member("primary", "h1"), MemberInfo(address="h1:7000").to_json())
    async with watching(etcd_server.port, layout.root) as watcher:
        snapshot = watcher.snapshot()
    assert snapshot.etcd_connected
    assert snapshot.pool("primary").members["h1"].address == "h1:7000"


async def test_drain_flag_is_seen_without_restart(client: EtcdClient, etcd_server: ManagedProcess) -> None:
    """Putting and deleting a pool's drain key flips `drained` in the running watcher."""
    layout = KeyLayout(unique_root())
    async with watching(etcd_server.port, layout.root) as watcher:
        await client.put(layout.drain("primary"), b"{}")

        def drained() -> None:
            assert watcher.snapshot().pool("primary").drained

        await assert_eventually(drained, timeout_s=2)
        await client.delete(layout.drain("primary"))

        def undrained() -> None:
            assert not watcher.snapshot().pool("primary").drained

        await assert_eventually(undrained, timeout_s=2)


async def test_mode_key_is_seen_without_restart(client: EtcdClient, etcd_server: ManagedProcess) -> None:
    """Setting /mode switches the snapshot's mode; deleting it returns to auto."""
    layout = KeyLayout(unique_root())
    async with watching(etcd_server.port, layout.root) as watcher:
        await client.put(layout.mode(), b"force-standin")

        def forced() -> None:
            assert watcher.snapshot().mode is Mode.FORCE_STANDIN

        await assert_eventually(forced, timeout_s=2)
        await client.delete(layout.mode())

        def auto() -> None:
            assert watcher.snapshot().mode is Mode.AUTO

        await assert_eventually(auto, timeout_s=2)


async def test_listener_gets_each_content_change_but_not_foreign_keys(
    client: EtcdClient, etcd_server: ManagedProcess
) -> None:
    """on_change is called with the new snapshot for a member change, not for a key outside the layout."""
    layout = KeyLayout(unique_root())
    seen: list[Membership] = []
    async with watching(etcd_server.port, layout.root, on_change=seen.append) as watcher:
        seen.clear()
        await client.put(f"{layout.prefix}unrelated", b"x")
        await client.put(layout.member("primary", "h1"), MemberInfo(address="h1:7000").to_json())

        def member_seen() -> None:
            assert [list(m.pool("primary").members) for m in seen] == [["h1"]]

        await assert_eventually(member_seen, timeout_s=2)
        assert seen[-1] is watcher.snapshot()


async def test_cold_start_without_etcd_serves_the_seed() -> None:
    """With etcd unreachable at start, the seed membership is served, marked etcd_connected=False."""
    seed = Membership.seed({"primary": {"h1": "10.0.0.1:7000"}})
    started = time.monotonic()
    async with watching(free_port(), unique_root(), seed=seed, initial_sync_timeout_s=5) as watcher:
        assert time.monotonic() - started < 2, "start() must not wait for an absent etcd"
        snapshot = watcher.snapshot()
    assert not snapshot.etcd_connected
    assert snapshot.pool("primary").members["h1"].address == "10.0.0.1:7000"


async def test_compacted_history_falls_back_to_a_full_read(private_etcd: ManagedProcess) -> None:
    """Changes made while the watcher was cut off, then compacted away, still reach it (by a range read)."""
    async with EtcdClient([Endpoint("127.0.0.1", private_etcd.port)], request_timeout_s=5) as client:
        await cut_off_during_compaction(client, private_etcd)


async def cut_off_during_compaction(client: EtcdClient, etcd: ManagedProcess) -> None:
    layout = KeyLayout(unique_root())
    proxy = await CuttableProxy(etcd.port).start()
    try:
        async with watching(proxy.port, layout.root) as watcher:
            await client.put(layout.member("primary", "h1"), MemberInfo(address="h1:7000").to_json())

            def h1_seen() -> None:
                assert list(watcher.snapshot().pool("primary").members) == ["h1"]

            await assert_eventually(h1_seen, timeout_s=2)
            proxy.cut()

            def disconnected() -> None:
                assert not watcher.snapshot().etcd_connected

            await assert_eventually(disconnected, timeout_s=3)
            await client.delete(layout.member("primary", "h1"))
            await client.compact(await client.put(layout.member("primary", "h2"), b'{"address": "h2:1"}'))
            proxy.restore()

            def caught_up() -> None:
                snapshot = watcher.snapshot()
                assert snapshot.etcd_connected
                assert list(snapshot.pool("primary").members) == ["h2"]

            await assert_eventually(caught_up, timeout_s=5)
    finally:
        await proxy.close()


async def test_close_twice_leaves_no_task_behind(etcd_server: ManagedProcess) -> None:
    """close() is idempotent and cancels the watcher's task; the last snapshot stays readable."""
    async with EtcdClient([Endpoint("127.0.0.1", etcd_server.port)]) as c:
        watcher = MembershipWatcher(c, key_root=unique_root())
        await watcher.start()
        await watcher.close()
        await watcher.close()
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert not any(name.startswith("membership watcher") for name in names)
        assert watcher.snapshot().etcd_connected
        with pytest.raises(RuntimeError, match="closed"):
            await watcher.start()
