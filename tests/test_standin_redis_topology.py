"""The harness's switch `TopologySpec(redis_tls=True)`: real gateways on a TLS Redis with ACL users."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from helpers import assert_eventually

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.topology import Topology, TopologySpec
from standin import keys
from tests.gateway_fixtures import auth_request


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """One gateway, two pools, the gateways' Redis over TLS with the gateway/settle/operator users."""
    topo = Topology(tmp_path_factory.mktemp("tls-redis-topo"), TopologySpec(redis=True, redis_tls=True))
    topo.start()
    yield topo
    topo.stop()


async def test_gateway_stands_in_and_settles_over_tls_redis(topology: Topology) -> None:
    """Every issuer host down: the gateway decides in stand-in, journaled over TLS as its ACL user;
    hosts back: its settlement worker (the settle user) drains the journal; Redis refused nothing."""
    assert topology.redis_url.startswith("rediss://")
    admin = topology.redis_admin()
    try:
        await admin.acl_log_reset()
        for sim in topology.sims.values():
            sim.kill()
        async with topology.acquirer_channel(topology.gateways[0].address) as channel:
            stub = pb_grpc.AuthorizationStub(channel)
            answer = await stub.Authorize(auth_request(request_id="tls-redis-1"), timeout=5)
        assert (answer.source, answer.decision) == (pb.STAND_IN, pb.APPROVED)

        async def journaled() -> None:  # at once, or moved from the local journal when the first
            # Redis call of a loaded machine missed its deadline (the gateway then decides locally)
            assert await admin.xlen(keys.stream_key(0)) == 1

        await assert_eventually(journaled, timeout_s=10)
        for member in list(topology.sims):
            await asyncio.to_thread(topology.restart_sim, member)

        async def settled() -> None:
            assert await admin.xlen(keys.stream_key(0)) == 0

        await assert_eventually(settled, timeout_s=20)
        users = {c.get("user") for c in await admin.client_list()}
        assert {"authgw-gateway", "authgw-settle"} <= users
        assert await admin.acl_log() == []
    finally:
        await admin.aclose()
    assert "PLAINTEXT: Redis" not in topology.gateways[0].tail_log(100_000)
