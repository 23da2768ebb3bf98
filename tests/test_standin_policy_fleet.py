"""The issue's check, on real processes: all issuer hosts hung, an approved change reaches every gateway.

A topology with TLS everywhere and etcd auth (two pools, two gateway processes, Redis): every
simulator SIGSTOPped, so both gateways answer in stand-in; `authgw standin policy set` by
operator, `approve` by operator2; within 5 seconds each gateway declines above the new
purchase window and the journal entry of that decline records the new version.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PAN_MC, PAN_VISA, assert_eventually
from test_standin_policy_live import purchase_limit
from test_standin_support import luhn_pan

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.processes import run_authgw
from chaos.topology import Topology, TopologySpec
from standin.entry import decode_decision
from tests.gateway_fixtures import auth_request

STREAM = "authgw:{journal:0}:decisions"
_ids = itertools.count()


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """etcd (auth), Redis, two pools of two hosts, two gateways; every host hung once started."""
    topology = Topology(
        tmp_path_factory.mktemp("policy-fleet"), TopologySpec(etcd=True, redis=True, gateways=2)
    )
    topology.start()
    try:
        for sim in topology.sims.values():
            sim.signal(signal.SIGSTOP)
        yield topology
    finally:
        for sim in topology.sims.values():
            sim.signal(signal.SIGCONT)
        topology.stop()


def policy_command(topo: Topology, operator: str, *argv: str) -> str:
    done = run_authgw(["standin", "policy", *argv, *topo.etcd_args(operator)], timeout_s=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def authorize(topo: Topology, gateway: int, pan: str, amount_minor: int) -> pb.AuthorizeResponse:
    request = auth_request(request_id=f"pol-{next(_ids)}", pan=pan, amount_minor=amount_minor)
    async with topo.acquirer_channel(topo.gateways[gateway].address) as channel:
        return await pb_grpc.AuthorizationStub(channel).Authorize(request, timeout=5)


async def test_an_approved_change_reaches_every_gateway_within_seconds(
    topo: Topology, tmp_path: Path
) -> None:
    """Before: 25.00 approved under version 0. After set + approve: declined 61 by both, journaled as v1."""
    pans = (PAN_VISA, PAN_MC)

    async def in_standin(gateway: int) -> None:
        answer = await authorize(topo, gateway, pans[gateway], 2_500)
        assert (answer.source, answer.decision, answer.policy_version) == (pb.STAND_IN, pb.APPROVED, 0)

    for gateway in (0, 1):
        await assert_eventually(lambda g=gateway: in_standin(g), timeout_s=30, interval_s=0.5)
    file = tmp_path / "lower.toml"
    file.write_text(purchase_limit(2_000))
    proposed = await asyncio.to_thread(policy_command, topo, "operator", "set", str(file))
    found = re.search(r"proposal (\S+)", proposed)
    assert found, proposed
    approved = await asyncio.to_thread(policy_command, topo, "operator2", "approve", found.group(1))
    assert "version 1 live" in approved

    async def declined(gateway: int) -> pb.AuthorizeResponse:
        answer = await authorize(topo, gateway, pans[gateway], 2_500)
        assert (answer.source, answer.response_code, answer.rule) == (
            pb.STAND_IN,
            "61",
            "limit.amount.purchase",
        )
        assert answer.policy_version == 1
        return answer

    answers = [
        await assert_eventually(lambda g=g: declined(g), timeout_s=5.0, interval_s=0.2) for g in (0, 1)
    ]
    redis = topo.redis_admin()
    try:
        entries = {d.decision_id: d for d in (decode_decision(f) for _, f in await redis.xrange(STREAM))}
    finally:
        await redis.aclose()
    assert [entries[a.decision_id].policy_version for a in answers] == [1, 1]
    shown = await asyncio.to_thread(policy_command, topo, "operator", "show")
    assert "live version 1: proposed by operator, approved by operator2" in shown


async def test_an_exposure_budget_set_live_applies_on_every_gateway_within_seconds(
    topo: Topology, tmp_path: Path
) -> None:
    """A 5,000 budget set and approved while in stand-in: within 5 s each gateway declines 91 with
    exposure_budget.fleet under the new version (both draw on the one fleet-wide budget)."""
    file = tmp_path / "budget.toml"
    file.write_text(
        purchase_limit(1_000_000)
        + '\n[[policy.exposure_budgets]]\nname = "fleet"\nperiod = "1h"\n'
        + "max_amount_minor = 5000\nshards = 1\n"
    )
    proposed = await asyncio.to_thread(policy_command, topo, "operator", "set", str(file))
    found = re.search(r"proposal (\S+)", proposed)
    assert found, proposed
    approved = await asyncio.to_thread(policy_command, topo, "operator2", "approve", found.group(1))
    live = re.search(r"version (\d+) live", approved)
    assert live, approved
    cards = (luhn_pan(f"43{i:08d}") for i in itertools.count())

    async def spent(gateway: int) -> None:
        answer = await authorize(topo, gateway, next(cards), 2_000)
        assert (answer.source, answer.response_code, answer.rule, answer.policy_version) == (
            pb.STAND_IN, "91", "exposure_budget.fleet", int(live.group(1)),
        )  # fmt: skip

    for gateway in (0, 1):
        await assert_eventually(lambda g=gateway: spent(g), timeout_s=5.0, interval_s=0.2)
