"""`authgw top --once` over a running topology: what an operator reads on the screen.

etcd, Redis and issuer simulators with their agents (mutual TLS everywhere, as `make demo`), a
gateway with a Prometheus endpoint; `authgw top` runs as an operator runs it: the endpoint, etcd
with the operator's certificate ($AUTHGW_ETCD_*), the Redis journal through the gateway's config.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.processes import free_port
from chaos.topology import Topology, TopologySpec
from tests.deploy_scenario import authgw_cli
from tests.gateway_fixtures import auth_request
from tests.helpers import assert_eventually
from tests.iso8583_readme_client import Connection
from tests.test_iso8583_acquirer_e2e import acquirer_tls, echo


class Rig:
    """A topology whose gateways export Prometheus metrics (topo.metrics_urls)."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.sent = 0

    def top(self, *extra: str) -> str:
        """One frame of `authgw top --once` (this checkout's code), wide enough not to wrap."""
        urls = [arg for url in self.topo.metrics_urls for arg in ("--metrics", url)]
        args = ["top", "--once", *urls, "--interval", "0.5", *extra]
        return authgw_cli(*args, topo=self.topo, env={"COLUMNS": "240"})

    def top_with_journal(self) -> str:
        return self.top("--config", str(self.topo.workdir / "gateway-1.toml"))

    async def authorize(self, n: int) -> list[pb.AuthorizeResponse]:
        async with self.topo.acquirer_channel(self.topo.gateways[0].address) as channel:
            stub = pb_grpc.AuthorizationStub(channel)
            out = []
            for _ in range(n):
                self.sent += 1
                out.append(await stub.Authorize(auth_request(request_id=f"top-{self.sent}"), timeout=5))
            return out


def _spec(**overrides: Any) -> TopologySpec:
    """primary (a1, a2) and secondary (b1) with agents in etcd, Redis, gateways with metrics."""
    fields: dict[str, Any] = {
        "pools": {"primary": ("a1", "a2"), "secondary": ("b1",)},
        "etcd": True,
        "redis": True,
        "metrics": True,
        "gateway_extra": {"telemetry": {"metric_export_interval": "300ms"}},  # journal sampled often
    }
    return TopologySpec(**(fields | overrides))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """One gateway."""
    topo = Topology(tmp_path, _spec())
    await asyncio.to_thread(topo.start)
    try:
        yield Rig(topo)
    finally:
        await asyncio.to_thread(topo.stop)


def _row(screen: str, *words: str) -> str:
    """The first line of `screen` holding every word."""
    lines = [line for line in screen.splitlines() if all(w in line for w in words)]
    assert lines, (words, screen)
    return lines[0]


async def test_healthy_pools_show_members_and_mode_issuer(tmp_path: Path) -> None:
    """Pools with every member healthy, as the gateway routes and as etcd registers them; mode issuer;
    requests per second by edge (gRPC and ISO 8583 echoes sent while top reads)."""
    iso_port = free_port()
    spec = _spec()
    extra = {**spec.gateway_extra, "iso8583_listen": {"listen": f"127.0.0.1:{iso_port}"}}
    topo = Topology(tmp_path, dataclasses.replace(spec, gateway_extra=extra))
    await asyncio.to_thread(topo.start)
    try:
        await _healthy(Rig(topo), iso_port)
    finally:
        await asyncio.to_thread(topo.stop)


async def _healthy(rig: Rig, iso_port: int) -> None:
    answers = await rig.authorize(3)
    assert {a.source for a in answers} == {pb.ISSUER}
    link = await Connection.open(iso_port, acquirer_tls(rig.topo))
    try:
        frame = asyncio.create_task(asyncio.to_thread(rig.top))
        while not frame.done():  # ISO 8583 echoes during top's interval
            await link.send("0800", echo())
            await link.receive()
        screen = await frame
    finally:
        await link.close()
    assert re.search(r"iso8583 [0-9.]*[1-9]", _row(screen, "gw-1", "issuer")), screen
    assert "mode issuer" in _row(screen, "authgw top")
    assert "etcd mode auto, 1 gateway(s) registered" in screen
    gateway = _row(screen, "gw-1", "issuer")
    assert "DOWN" not in gateway
    assert "2 healthy" in _row(screen, "gw-1", "primary", "ok")
    assert "a1:healthy a2:healthy" in _row(screen, "gw-1", "primary", "ok")
    assert "b1:healthy" in _row(screen, "gw-1", "secondary", "ok")
    assert "a1@127.0.0.1:" in _row(screen, "etcd", "primary", "2 registered")
    assert "STAND-IN" not in screen


async def test_every_issuer_hung_shows_standin_and_a_growing_journal(rig: Rig) -> None:
    """Every host SIGSTOPped: mode STAND-IN, stand-in answers, the journal grows between two frames."""
    for sim in rig.topo.sims.values():
        sim.signal(signal.SIGSTOP)
    try:

        async def standin() -> None:
            (answer,) = await rig.authorize(1)
            assert answer.source == pb.STAND_IN

        await assert_eventually(standin, timeout_s=20, interval_s=0.2)
        await rig.authorize(5)

        def frame_with_journal() -> tuple[str, int]:
            screen = rig.top_with_journal()
            assert "mode STAND-IN" in _row(screen, "authgw top"), screen
            found = re.search(r"journal \(Redis, fleet\): (\d+) unsettled", screen)
            assert found is not None, screen
            assert re.search(r"redis [1-9]", _row(screen, "gw-1", "STAND-IN")), screen  # the gateway's own
            return screen, int(found.group(1))

        first, before = await assert_eventually(lambda: asyncio.to_thread(frame_with_journal), timeout_s=20)
        assert before >= 6
        approvals = r"stand-in approvals, last hour \(journal, as seen since top started\): [1-9]"
        assert re.search(approvals, first)
        assert "no budget metric exported yet" in first
        await rig.authorize(10)
        frame = asyncio.create_task(asyncio.to_thread(frame_with_journal))
        while not frame.done():  # traffic during top's interval: answers per second to show
            await rig.authorize(1)
        screen, after = await frame
        assert after >= before + 10
        assert re.search(r"STAND_IN\W+[0-9.]*[1-9][0-9.]*\W+\d\d: [0-9.]*[1-9]", screen), screen  # answers/s
        cells = [cell.strip() for cell in _row(screen, "gw-1", "STAND-IN").split("│")]
        assert float(cells[3]) > 0, screen  # requests/s received by the gRPC edge
    finally:
        for sim in rig.topo.sims.values():
            sim.signal(signal.SIGCONT)


async def test_a_pool_with_no_member_left_shows_zero(rig: Rig) -> None:
    """The only agent of secondary stops: etcd lists no member, the gateway still shows the pool, at 0."""
    rig.topo.agents["b1"].kill()

    def empty() -> str:
        screen = rig.top()
        assert "0 members" in _row(screen, "gw-1", "secondary"), screen
        return screen

    screen = await assert_eventually(lambda: asyncio.to_thread(empty), timeout_s=30, interval_s=0.5)
    assert "2 healthy" in _row(screen, "gw-1", "primary")


async def test_a_fleet_in_one_frame_and_the_forced_mode(tmp_path: Path) -> None:
    """Two gateways, each its row; `authgw mode force-standin` shows as FORCED-STANDIN on both and as
    etcd's mode; a gateway stopped stays on screen as DOWN."""
    topo = Topology(tmp_path, _spec(gateways=2))
    await asyncio.to_thread(topo.start)
    try:
        rig = Rig(topo)
        screen = await asyncio.to_thread(rig.top)
        assert "2 gateway(s)  mode issuer" in screen
        assert "etcd mode auto, 2 gateway(s) registered" in screen
        await asyncio.to_thread(authgw_cli, "mode", "force-standin", topo=topo)

        def forced() -> str:
            screen = rig.top()
            assert "mode FORCED-STANDIN" in _row(screen, "authgw top"), screen
            assert "etcd mode force-standin" in screen
            return screen

        screen = await assert_eventually(lambda: asyncio.to_thread(forced), timeout_s=20, interval_s=0.5)
        for gateway in ("gw-1", "gw-2"):
            _row(screen, gateway, "FORCED-STANDIN")
        topo.gateways[1].stop()
        screen = await asyncio.to_thread(rig.top)
        assert "Connection refused" in _row(screen, topo.metrics_urls[1], "DOWN")
        _row(screen, "gw-1", "FORCED-STANDIN")
    finally:
        await asyncio.to_thread(topo.stop)
