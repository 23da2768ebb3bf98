"""ISO 8583 issuer hosts registered through etcd: the agent echoes them, gateways route by the record.

One topology: etcd with auth, an issuer simulator whose ISO 8583 port its health agent probes with
0800 echoes (`--protocol iso8583`, mutual TLS with the pool's certificate), and a gateway that learns
the member, and its protocol, from the agent's record.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest
from helpers import assert_eventually

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.topology import Topology, TopologySpec
from tests.gateway_fixtures import auth_request

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    spec = TopologySpec(pools={"primary": ("a1",)}, etcd=True, iso8583_issuers=True)
    topology = Topology(tmp_path_factory.mktemp("iso-etcd"), spec).start()
    try:
        yield topology
    finally:
        topology.stop()


async def test_agent_registers_the_iso8583_host_with_its_protocol(topo: Topology) -> None:
    """The echo-probed host is registered with protocol iso8583 at its ISO 8583 address."""
    async with topo.etcd_client() as client:
        raw = await client.get("/authgw/pools/primary/members/a1")
    assert raw is not None
    record = json.loads(raw.value)
    assert (record["protocol"], record["address"]) == ("iso8583", topo.member_address("a1"))


async def test_gateway_routes_to_the_registered_iso8583_host(topo: Topology) -> None:
    """An authorization through the gateway is answered by the ISO 8583 member etcd named."""
    request = auth_request(request_id="iso-etcd-1", amount_minor=900)
    request.transmitted_at.GetCurrentTime()
    async with topo.acquirer_channel(topo.gateways[0].address) as channel:
        answer = await pb_grpc.AuthorizationStub(channel).Authorize(request, timeout=5)
    assert (answer.response_code, answer.source, answer.pool, answer.member) == (
        "00",
        pb.ISSUER,
        "primary",
        "a1",
    )


async def test_host_that_stops_answering_echoes_is_deregistered(topo: Topology) -> None:
    """SIGSTOP the host: the agent's echoes go unanswered and it leaves etcd; SIGCONT: it is back."""
    topo.sims["a1"].signal(signal.SIGSTOP)
    try:

        def gone() -> None:
            assert "a1" not in topo.registered_members()

        await assert_eventually(gone, timeout_s=15)
    finally:
        topo.sims["a1"].signal(signal.SIGCONT)

    def back() -> None:
        assert "a1" in topo.registered_members()

    await assert_eventually(back, timeout_s=15)
