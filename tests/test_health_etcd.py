"""EtcdClient and LeasedKey against a real etcd: errors, fail-over, watches, lease keeping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import assert_eventually
from test_health_support import unique_root

from chaos.processes import ManagedProcess, free_port, start_etcd
from health.errors import EtcdUnavailable, LeaseNotFound, RevisionCompacted
from health.etcd import Endpoint, EtcdClient, EventKind, TxnDelete, TxnPut, WatchEvent
from health.lease import LeasedKey


@pytest.fixture
async def client(etcd_server: ManagedProcess) -> AsyncIterator[EtcdClient]:
    async with EtcdClient([Endpoint("127.0.0.1", etcd_server.port)]) as c:
        yield c


async def test_range_read_returns_keys_and_revision(client: EtcdClient) -> None:
    """get_prefix returns every key under the prefix and the revision of the last write."""
    root = unique_root()
    await client.put(f"{root}/a", b"1")
    revision = await client.put(f"{root}/b", b"2")
    result = await client.get_prefix(f"{root}/")
    assert [(kv.key, kv.value) for kv in result.kvs] == [(f"{root}/a", b"1"), (f"{root}/b", b"2")]
    assert result.revision == revision


async def test_transaction_writes_all_or_nothing_and_counts_deletes(client: EtcdClient) -> None:
    """A transaction puts and deletes at one revision; with a key that must be absent present, nothing."""
    root = unique_root()
    await client.put(f"{root}/gone", b"x")
    done = await client.transaction(
        [TxnDelete(f"{root}/gone"), TxnDelete(f"{root}/never"), TxnPut(f"{root}/new", b"1")],
        absent=[f"{root}/new"],
    )
    assert done.applied and done.deleted == (1, 0)
    new = await client.get(f"{root}/new")
    assert new is not None and new.mod_revision == done.revision
    assert await client.get(f"{root}/gone") is None
    again = await client.transaction(
        [TxnPut(f"{root}/new", b"2"), TxnPut(f"{root}/other", b"3")], absent=[f"{root}/new"]
    )
    assert not again.applied
    assert (await client.get(f"{root}/new")).value == b"1"  # type: ignore[union-attr]
    assert await client.get(f"{root}/other") is None


async def test_revoked_lease_is_reported_as_lease_not_found(client: EtcdClient) -> None:
    """Refreshing or writing on a revoked lease raises LeaseNotFound; a second revoke is a no-op."""
    lease = await client.grant_lease(5)
    assert await client.revoke_lease(lease)
    with pytest.raises(LeaseNotFound):
        await client.refresh_lease(lease)
    with pytest.raises(LeaseNotFound):
        await client.put(f"{unique_root()}/k", b"v", lease=lease)
    assert not await client.revoke_lease(lease)


async def test_unreachable_etcd_raises_etcd_unavailable_within_the_deadline() -> None:
    """A call to an endpoint nobody listens on fails fast with EtcdUnavailable."""
    async with EtcdClient([Endpoint("127.0.0.1", free_port())], request_timeout_s=0.5) as dead:
        started = time.monotonic()
        with pytest.raises(EtcdUnavailable):
            await dead.get("/x")
        assert time.monotonic() - started < 1.0


async def test_call_fails_over_to_the_next_endpoint(etcd_server: ManagedProcess) -> None:
    """With a dead first endpoint, the same call succeeds on the next one and stays there."""
    dead, live = Endpoint("127.0.0.1", free_port()), Endpoint("127.0.0.1", etcd_server.port)
    async with EtcdClient([dead, live]) as c:
        await c.put(f"{unique_root()}/k", b"v")
        assert c.endpoint == live


async def test_closed_client_refuses_use(etcd_server: ManagedProcess) -> None:
    """A closed client raises instead of silently reconnecting; closing twice is fine."""
    c = EtcdClient([Endpoint("127.0.0.1", etcd_server.port)])
    await c.close()
    await c.close()
    with pytest.raises(RuntimeError, match="after close"):
        await c.get("/x")


async def test_watch_streams_puts_and_deletes_from_a_revision(client: EtcdClient) -> None:
    """A watch from revision R delivers the changes made at R and later, in order."""
    root = unique_root()
    start = await client.put(f"{root}/a", b"1")
    await client.delete(f"{root}/a")
    seen: list[WatchEvent] = []
    async with client.watch_prefix(f"{root}/", start) as events:
        async for event in events:
            seen.append(event)
            if len(seen) == 2:
                break
    assert [(e.kind, e.key, e.value) for e in seen] == [
        (EventKind.PUT, f"{root}/a", b"1"),
        (EventKind.DELETE, f"{root}/a", b""),
    ]


async def test_watch_from_a_compacted_revision_raises_revision_compacted(tmp_path: Path) -> None:
    """Asking for history older than the compaction point raises RevisionCompacted."""
    etcd = start_etcd(tmp_path / "etcd")  # compaction is global: keep it off the shared etcd
    try:
        async with EtcdClient([Endpoint("127.0.0.1", etcd.port)], request_timeout_s=5) as client:
            await watch_compacted(client)
    finally:
        etcd.stop()


async def watch_compacted(client: EtcdClient) -> None:
    root = unique_root()
    old = await client.put(f"{root}/a", b"1")
    await client.compact(await client.put(f"{root}/a", b"2"))
    with pytest.raises(RevisionCompacted):
        async with client.watch_prefix(f"{root}/", old) as events:
            async for _ in events:
                pass


async def test_leased_key_outlives_its_ttl_while_held(client: EtcdClient) -> None:
    """The keep-alive loop keeps a 1 s lease, and its key, alive for three times its TTL."""
    key = f"{unique_root()}/k"
    async with LeasedKey(client, key, lambda: b"v", ttl_s=1) as leased:
        leased.hold()
        await asyncio.wait_for(leased.wait_held(), 2)
        lease = leased.lease_id
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            kv = await client.get(key)
            assert kv is not None and kv.lease == lease
            await asyncio.sleep(0.2)


async def test_leased_key_release_removes_the_key_at_once(client: EtcdClient) -> None:
    """release() revokes the lease: the key is gone when it returns, not a TTL later."""
    key = f"{unique_root()}/k"
    async with LeasedKey(client, key, lambda: b"v", ttl_s=30) as leased:
        leased.hold()
        await asyncio.wait_for(leased.wait_held(), 2)
        await leased.release("test")
        assert await client.get(key) is None


async def test_leased_key_is_written_again_after_its_lease_is_lost(client: EtcdClient) -> None:
    """When etcd loses the lease (expiry during an outage), the loop re-registers on a new lease."""
    key = f"{unique_root()}/k"
    async with LeasedKey(client, key, lambda: b"v", ttl_s=3) as leased:
        leased.hold()
        await asyncio.wait_for(leased.wait_held(), 2)
        first = leased.lease_id
        assert first is not None
        await client.revoke_lease(first)

        async def rewritten() -> None:
            kv = await client.get(key)
            assert kv is not None and kv.lease not in (0, first)

        await assert_eventually(rewritten, timeout_s=3)


async def test_leased_key_close_is_idempotent_and_revokes(client: EtcdClient) -> None:
    """close() revokes the key and can be called twice."""
    key = f"{unique_root()}/k"
    leased = LeasedKey(client, key, lambda: b"v", ttl_s=30)
    await leased.start()
    leased.hold()
    await asyncio.wait_for(leased.wait_held(), 2)
    await leased.close()
    await leased.close()
    assert await client.get(key) is None


async def test_cancelled_caller_is_not_swallowed(client: EtcdClient) -> None:
    """Cancelling a task blocked in a watch cancels it (CancelledError propagates)."""
    root = unique_root()
    revision = await client.put(f"{root}/a", b"1")

    async def watch_forever() -> None:
        async with client.watch_prefix(f"{root}/", revision + 1) as events:
            async for _ in events:
                pass

    task = asyncio.create_task(watch_forever())
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
