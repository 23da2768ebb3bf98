"""Issue 20's checks through a gateway, every issuer host hung: mutual TLS, Redis over TLS as ACL users.

30 cards at one terminal in a minute are stopped by the terminal window; a small exposure
budget is spent and then declines with its rule; a failed CVV is declined 05.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator

import pytest
from test_standin_support import luhn_pan

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.topology import Topology, TopologySpec
from tests.gateway_fixtures import auth_request
from tests.helpers import assert_eventually

POLICY = """
[[policy.exposure_budgets]]
name = "small"
period = "1h"
max_amount_minor = 15_000
shards = 1
[policy.velocity]
window_length = "1m"
[policy.velocity.terminal]
max_count = 10
"""
_n = itertools.count()


@pytest.fixture(scope="module")
async def hung(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[pb_grpc.AuthorizationStub]:
    """A TLS topology whose only issuer host is hung, and a stub of its gateway already in stand-in."""
    spec = TopologySpec(pools={"primary": ("a1",)}, redis=True, standin_policy_toml=POLICY)
    topo = Topology(tmp_path_factory.mktemp("gw-risk"), spec)
    await asyncio.to_thread(topo.start)
    try:
        topo.sims["a1"].signal(signal.SIGSTOP)
        async with topo.acquirer_channel(topo.gateways[0].address) as channel:
            stub = pb_grpc.AuthorizationStub(channel)

            async def in_standin() -> None:
                answer = await stub.Authorize(
                    auth_request(request_id=f"warm-{next(_n)}", mcc="7995"), timeout=5
                )
                assert answer.source == pb.STAND_IN  # gambling: declined 57, draws on nothing

            await assert_eventually(in_standin, timeout_s=20, interval_s=0.2)
            yield stub
    finally:
        topo.sims["a1"].signal(signal.SIGCONT)
        await asyncio.to_thread(topo.stop)


async def authorize(stub: pb_grpc.AuthorizationStub, terminal: str, **kw: object) -> pb.AuthorizeResponse:
    n = next(_n)
    request = auth_request(request_id=f"risk-{n}", pan=luhn_pan(f"45{n:08d}"), terminal_id=terminal, **kw)
    answer: pb.AuthorizeResponse = await stub.Authorize(request, timeout=5)
    assert answer.source == pb.STAND_IN, answer
    return answer


async def test_terminal_window_then_budget_then_failed_cvv(hung: pb_grpc.AuthorizationStub) -> None:
    """30 cards at T-A: 10 approved, 20 declined 05 by the window; at T-B 5 more fit the budget, then 91."""
    at_a = [await authorize(hung, "T-A", amount_minor=1_000) for _ in range(30)]
    at_b = [await authorize(hung, "T-B", amount_minor=1_000) for _ in range(8)]
    cvv = await authorize(hung, "T-C", verification=pb.Verification(card_verification_value=pb.FAILED))
    assert [a.decision for a in at_a] == [pb.APPROVED] * 10 + [pb.DECLINED] * 20
    assert {(a.response_code, a.rule) for a in at_a[10:]} == {("05", "velocity.terminal.count")}
    assert [a.decision for a in at_b] == [pb.APPROVED] * 5 + [pb.DECLINED] * 3
    assert {(a.response_code, a.rule) for a in at_b[5:]} == {("91", "exposure_budget.small")}
    assert (cvv.decision, cvv.response_code, cvv.rule) == (pb.DECLINED, "05", "verification.cvv")
