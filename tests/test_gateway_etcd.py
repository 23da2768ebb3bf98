"""The gateway on live etcd membership: agents, drain, mode, etcd loss (real etcd and processes)."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chaos.processes import ManagedProcess, free_port, run_authgw, start_authgw
from chaos.sim_control import SimControl
from chaos.topology import Topology, TopologySpec
from gateway.app import Gateway
from gateway.config import parse_config
from health import KeyLayout, MemberInfo
from tests.gateway_fixtures import auth_request
from tests.helpers import assert_eventually

_ids = itertools.count()


def _rid(prefix: str) -> str:
    """A fresh request_id: a repeated one is answered from the issuer's memory."""
    return f"{prefix}-{next(_ids)}"


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """etcd, two pools of two simulators each with a health agent, no gateway process."""
    topology = Topology(tmp_path_factory.mktemp("etcd-topo"), TopologySpec(etcd=True, gateways=0)).start()
    yield topology
    topology.stop()


def _admin(topo: Topology, *args: str) -> subprocess.CompletedProcess[str]:
    """An operator's command, with the operator's etcd certificate."""
    return run_authgw([*args, *topo.etcd_args("operator")], timeout_s=30)


def _addresses(topo: Topology, *members: str) -> list[str]:
    return [topo.sims[m].address for m in members]


@pytest.fixture
async def gateway(topo: Topology) -> AsyncIterator[Gateway]:
    """An in-process gateway whose config lists pools and priorities but no member."""
    cfg = parse_config(
        {
            "gateway": {"listen": f"127.0.0.1:{free_port()}", "instance": "gw-3"},  # its own etcd user
            **topo.pki.gateway_sections(etcd_endpoints=topo.etcd_endpoints, instance="gw-3"),
            "pools": [  # members only from etcd, at the addresses the bank gave its issuer hosts
                {"name": pool, "priority": i + 1, "allowed": _addresses(topo, *members)}
                | {"server_name": f"{pool}.issuer.authgw.test"}
                for i, (pool, members) in enumerate((("primary", ("a1", "a2")), ("secondary", ("b1", "b2"))))
            ],
        },
        "<test>",
    )
    gw = Gateway(cfg)
    await gw.start()
    yield gw
    await gw.close()
    for name, sim in topo.sims.items():
        sim.signal(signal.SIGCONT)
        if not topo.agents[name].alive():
            topo.start_agent(name)
    for pool in ("primary", "secondary"):
        _admin(topo, "undrain", pool)
    _admin(topo, "mode", "auto")


def _members(gw: Gateway) -> dict[str, set[str]]:
    return {p.name: set(p.members) for p in gw.router.pools}


async def _all_members_live(gw: Gateway) -> None:
    async def check() -> None:
        assert _members(gw) == {"primary": {"a1", "a2"}, "secondary": {"b1", "b2"}}

    await assert_eventually(check, timeout_s=10)


async def test_members_come_from_agents(gateway: Gateway, topo: Topology) -> None:
    """With no static member, the router learns all four members from their agents' leases."""
    await _all_members_live(gateway)

    async def registered() -> None:
        out = _admin(topo, "pools", "--json")
        assert out.returncode == 0, out.stderr
        assert "gw-3" in json.loads(out.stdout)["gateways"]

    await assert_eventually(registered, timeout_s=5)  # the registration is made in the background
    resp = await gateway.service.decide(auth_request(request_id=_rid("etcd")), None)
    assert resp.pool == "primary"


async def test_hung_pool_leaves_membership(gateway: Gateway, topo: Topology) -> None:
    """SIGSTOP of the primary hosts: their agents revoke within fall x interval + 1 s; secondary answers."""
    await _all_members_live(gateway)
    for m in ("a1", "a2"):
        topo.sims[m].signal(signal.SIGSTOP)

    async def gone() -> None:
        assert _members(gateway).get("primary", set()) == set()

    await assert_eventually(gone, timeout_s=2.0)
    resp = await gateway.service.decide(auth_request(request_id=_rid("etcd")), None)
    assert (resp.pool, resp.response_code) == ("secondary", "00")
    for m in ("a1", "a2"):
        topo.sims[m].signal(signal.SIGCONT)
    await _all_members_live(gateway)


async def test_killed_agent_member_expires(gateway: Gateway, topo: Topology) -> None:
    """SIGKILL of an agent: its member leaves routing within the lease TTL + 1 s."""
    await _all_members_live(gateway)
    topo.agents["b2"].kill()

    async def gone() -> None:
        assert "b2" not in _members(gateway)["secondary"]

    await assert_eventually(gone, timeout_s=3 + 1)


async def test_drain_moves_traffic(gateway: Gateway, topo: Topology) -> None:
    """`authgw drain primary` moves traffic to the secondary without restart; undrain brings it back."""
    await _all_members_live(gateway)
    assert _admin(topo, "drain", "primary").returncode == 0

    async def on_secondary() -> None:
        resp = await gateway.service.decide(auth_request(request_id=_rid("drain")), None)
        assert resp.pool == "secondary"

    await assert_eventually(on_secondary, timeout_s=3)
    assert _admin(topo, "undrain", "primary").returncode == 0

    async def back() -> None:
        resp = await gateway.service.decide(auth_request(request_id=_rid("drain")), None)
        assert resp.pool == "primary"

    await assert_eventually(back, timeout_s=3)


async def test_mode_force_standin(gateway: Gateway, topo: Topology) -> None:
    """`authgw mode force-standin` makes the gateway answer by itself (reason FORCED), `auto` undoes it."""
    await _all_members_live(gateway)
    assert _admin(topo, "mode", "force-standin").returncode == 0

    async def forced() -> None:
        resp = await gateway.service.decide(auth_request(request_id=_rid("mode")), None)
        assert resp.standin_reason == 4  # FORCED
        assert resp.pool == ""

    await assert_eventually(forced, timeout_s=3)
    assert _admin(topo, "mode", "nonsense").returncode == 2
    assert _admin(topo, "mode", "auto").returncode == 0

    async def issuer() -> None:
        resp = await gateway.service.decide(auth_request(request_id=_rid("mode")), None)
        assert resp.pool == "primary"

    await assert_eventually(issuer, timeout_s=3)


async def test_etcd_down_keeps_routing_then_catches_up(gateway: Gateway, topo: Topology) -> None:
    """etcd SIGKILLed: requests are still approved by the issuer; after restart, a drain is seen."""
    await _all_members_live(gateway)
    etcd: ManagedProcess = topo.etcd[0]
    etcd.kill()

    async def disconnected() -> None:
        assert gateway.membership is not None
        assert not gateway.membership.etcd_connected

    await assert_eventually(disconnected, timeout_s=10)
    for _ in range(20):
        resp = await gateway.service.decide(auth_request(request_id=_rid("no-etcd")), None)
        assert (resp.pool, resp.response_code) == ("primary", "00")
    etcd.start()

    async def reconnected() -> None:
        assert gateway.membership is not None
        assert gateway.membership.etcd_connected

    await assert_eventually(reconnected, timeout_s=15)
    assert _admin(topo, "drain", "primary").returncode == 0

    async def drained() -> None:
        assert [p.drained for p in gateway.router.pools if p.name == "primary"] == [True]

    await assert_eventually(drained, timeout_s=5)
    await _all_members_live(gateway)


async def test_rogue_members_in_etcd_get_no_request(gateway: Gateway, topo: Topology, tmp_path: Path) -> None:
    """Anyone who can write to etcd registers an approving host in the primary pool (at an address
    nobody allowed) and in a pool the config does not name: both are ignored and counted, and the
    rogue host answers no request."""
    await _all_members_live(gateway)
    port = free_port()
    assert topo.pki is not None  # a genuine primary certificate: only its address is wrong
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", "x"]
    rogue = start_authgw(tmp_path, "rogue", [*args, *topo.pki.issuer_sim_args("primary")], port)
    layout = KeyLayout()
    info = MemberInfo(address=rogue.address, weight=100).to_json()
    try:
        async with topo.etcd_client() as etcd:
            await etcd.put(layout.member("primary", "rogue"), info)
            await etcd.put(layout.member("shadow", "rogue"), info)

            async def ignored() -> None:
                rejected = gateway.membership.filter.rejected if gateway.membership else {}
                assert rejected[("primary", "address_not_allowed")] >= 1
                assert rejected[("shadow", "unknown_pool")] >= 1

            await assert_eventually(ignored, timeout_s=5)
            assert _members(gateway) == {"primary": {"a1", "a2"}, "secondary": {"b1", "b2"}}
            for _ in range(20):
                resp = await gateway.service.decide(auth_request(request_id=_rid("rogue")), None)
                assert resp.pool == "primary" and resp.member in {"a1", "a2"}
            await etcd.delete(layout.member("primary", "rogue"))
            await etcd.delete(layout.member("shadow", "rogue"))
        async with SimControl(rogue.address, tls=topo.control_tls) as ctl:
            assert (await ctl.report()).authorize_calls == 0
    finally:
        rogue.stop()
