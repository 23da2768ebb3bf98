"""Balance-aware stand-in through a gateway: the issuer reports 30.00 left, then every host hangs.

The issuer simulator answers with the card's available balance (send_balance); the gateway keeps
it off the answer's path in the card's slot; in stand-in 50.00 is declined 51 and 20.00 approved.
Once the balance has expired ([balance] ttl), the same card is back on the policy's limits.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.card_profiles import PAN_LOW_BALANCE, card_profile
from chaos.topology import Topology, TopologySpec
from tests.gateway_fixtures import auth_request
from tests.helpers import assert_eventually

BALANCE_TTL_S = 30
POLICY = f"""
[balance]
ttl = "{BALANCE_TTL_S}s"
"""


async def test_reported_30_declines_50_approves_20_and_expires(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Issuer said 30.00 left: stand-in 50.00 → 51 balance.available, 20.00 → 00; expired: 50.00 → 00."""
    spec = TopologySpec(pools={"primary": ("a1",)}, redis=True, standin_policy_toml=POLICY)
    topo = Topology(tmp_path_factory.mktemp("gw-balance"), spec)
    await asyncio.to_thread(topo.start)
    redis = topo.redis_admin()
    try:
        async with topo.sim_control("a1") as control:
            await control.set_faults(send_balance=True)
        async with topo.acquirer_channel(topo.gateways[0].address) as channel:
            stub = pb_grpc.AuthorizationStub(channel)
            spend = card_profile(PAN_LOW_BALANCE).balance_minor - 3_000
            issuer = await stub.Authorize(
                auth_request(request_id="bal-1", pan=PAN_LOW_BALANCE, amount_minor=spend), timeout=5
            )
            assert (issuer.source, issuer.decision, issuer.available_balance_minor) == (
                pb.ISSUER,
                pb.APPROVED,
                3_000,
            )

            async def kept() -> None:
                assert [k async for k in redis.scan_iter(match="authgw:*:balance")]

            await assert_eventually(kept, timeout_s=10, interval_s=0.05)
            topo.sims["a1"].signal(signal.SIGSTOP)

            async def in_standin() -> None:
                warm = await stub.Authorize(auth_request(request_id="bal-warm", mcc="7995"), timeout=5)
                assert warm.source == pb.STAND_IN

            await assert_eventually(in_standin, timeout_s=20, interval_s=0.2)
            over, within = [
                await stub.Authorize(
                    auth_request(request_id=f"bal-{n}", pan=PAN_LOW_BALANCE, amount_minor=n), timeout=5
                )
                for n in (5_000, 2_000)
            ]

            async def expired() -> None:
                assert not [k async for k in redis.scan_iter(match="authgw:*:balance")]

            await assert_eventually(expired, timeout_s=BALANCE_TTL_S * 3, interval_s=0.5)
            after = await stub.Authorize(
                auth_request(request_id="bal-after", pan=PAN_LOW_BALANCE, amount_minor=5_000), timeout=5
            )
    finally:
        topo.sims["a1"].signal(signal.SIGCONT)
        await redis.aclose()
        await asyncio.to_thread(topo.stop)
    assert (over.source, over.decision, over.response_code, over.rule) == (
        pb.STAND_IN,
        pb.DECLINED,
        "51",
        "balance.available",
    )
    assert (within.source, within.decision) == (pb.STAND_IN, pb.APPROVED)
    assert (after.source, after.decision) == (pb.STAND_IN, pb.APPROVED)
