"""GatewayRegistration: a gateway lists itself in etcd on its own lease."""

from __future__ import annotations

import asyncio
import time

from helpers import assert_eventually
from test_health_support import CuttableProxy, unique_root

from chaos.processes import ManagedProcess
from health.etcd import Endpoint, EtcdClient
from health.registration import GatewayRegistration
from health.watcher import MembershipWatcher


async def test_gateway_is_listed_while_registered_and_leaves_on_close(etcd_server: ManagedProcess) -> None:
    """The watcher sees the gateway's address while it runs; close() removes it at once."""
    root = unique_root()
    async with (
        EtcdClient([Endpoint("127.0.0.1", etcd_server.port)]) as c,
        MembershipWatcher(c, key_root=root) as watcher,
    ):
        registration = GatewayRegistration(c, "gw-1", "127.0.0.1:9000", key_root=root)
        await registration.start()

        def listed() -> None:
            info = watcher.snapshot().gateways.get("gw-1")
            assert info is not None and info.address == "127.0.0.1:9000"

        await assert_eventually(listed, timeout_s=2)
        await registration.close()
        await registration.close()
        assert registration.registered is False

        def gone() -> None:
            assert "gw-1" not in watcher.snapshot().gateways

        await assert_eventually(gone, timeout_s=0.5)


async def test_start_does_not_wait_for_etcd_and_registers_when_it_answers(
    etcd_server: ManagedProcess,
) -> None:
    """A gateway starts with etcd unreachable; its key appears once etcd answers."""
    root = unique_root()
    proxy = await CuttableProxy(etcd_server.port).start()
    proxy.cut()
    try:
        async with (
            EtcdClient([Endpoint("127.0.0.1", proxy.port)], request_timeout_s=0.5) as c,
            EtcdClient([Endpoint("127.0.0.1", etcd_server.port)]) as reader,
        ):
            started = time.monotonic()
            async with GatewayRegistration(c, "gw-2", "127.0.0.1:9001", key_root=root) as registration:
                assert time.monotonic() - started < 0.5
                assert not registration.registered
                proxy.restore()
                await asyncio.wait_for(registration.wait_registered(), 5)
                assert await reader.get(f"{root}/gateways/gw-2") is not None
    finally:
        await proxy.close()
