"""A fleet of three gateways behind one client-side round_robin channel (issue 18, point 3).

Requests spread over all three (each gateway's own metrics count its decisions); with one
gateway killed, the same request ids sent again through the same channel are answered by the
survivors with the decisions first given (idempotent by (acquirer, request_id)).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from authgw.v1 import authorization_pb2 as pb
from chaos.gateway_stubs import GatewayStubs
from chaos.load import CardMix
from chaos.pki import GATEWAY_SERVER_NAME
from chaos.processes import run_authgw
from chaos.topology import Topology, TopologySpec
from chaos.verify import issuer_books
from gateway.fleet_client import authorize_on_fleet, fleet_target
from tests.helpers import assert_eventually

pytestmark = pytest.mark.timeout(300)

DECIDED = "authgw_decisions_total"
RECEIVED = "authgw_requests_total"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topo = Topology(
        tmp_path_factory.mktemp("fleet"),
        TopologySpec(gateways=3, metrics=True, attempt_timeout_ms=2000, deadline_ms=6000),
    ).start()
    try:
        yield topo
    finally:
        topo.stop()


def _counter(url: str, name: str) -> float:
    """The sum of a gateway's `name` counters (e.g. authgw_decisions_total: its answers so far)."""
    with urllib.request.urlopen(url, timeout=5) as resp:  # the test's own loopback URL
        text = resp.read().decode()
    return sum(
        float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.split("{")[0].split(" ")[0] == name
    )


def _targets(topo: Topology) -> list[str]:
    return [g.address for g in topo.gateways]


def _fleet(topo: Topology) -> GatewayStubs:
    """One round_robin channel over the topology's gateways, as acquirer 1001."""
    return GatewayStubs(
        _targets(topo), topo.acquirer_credentials, balanced=True, server_name=GATEWAY_SERVER_NAME
    )


async def _authorize(fleet: GatewayStubs, req: pb.AuthorizeRequest) -> pb.AuthorizeResponse:
    stub = fleet.of(req.acquirer_id)[0]  # balanced: the same round_robin stub at every index
    return await authorize_on_fleet(stub, req, timeout_s=8.0, attempts=len(fleet))


async def _set_latency(topo: Topology, latency_ms: int) -> None:
    for member in topo.sims:
        async with topo.sim_control(member) as ctl:
            await ctl.set_faults(latency_ms=latency_ms)


async def _kill_in_flight(
    topo: Topology, fleet: GatewayStubs, reqs: list[pb.AuthorizeRequest]
) -> dict[str, pb.AuthorizeResponse]:
    """Send `reqs` at once; SIGKILL gateway 0 while it holds some of them; request_id -> answer."""
    url = topo.metrics_urls[0]
    received = await asyncio.to_thread(_counter, url, RECEIVED)
    await _set_latency(topo, 500)  # well under the attempt timeout: slow enough to kill in flight
    try:
        calls = [asyncio.create_task(_authorize(fleet, r)) for r in reqs]

        async def gateway_0_holds_some() -> None:
            assert await asyncio.to_thread(_counter, url, RECEIVED) > received

        await assert_eventually(gateway_0_holds_some, timeout_s=10)
        topo.gateways[0].kill()
        return {r.request_id: a for r, a in zip(reqs, await asyncio.gather(*calls), strict=True)}
    finally:
        await _set_latency(topo, 0)


async def _scenario(topo: Topology) -> None:
    mix = CardMix(cards=50, seed=18)
    spread, in_flight = [mix.request() for _ in range(30)], [mix.request() for _ in range(12)]
    before = [await asyncio.to_thread(_counter, u, DECIDED) for u in topo.metrics_urls]
    fleet = _fleet(topo)
    try:
        first = {r.request_id: await _authorize(fleet, r) for r in spread}
        after = [await asyncio.to_thread(_counter, u, DECIDED) for u in topo.metrics_urls]
        served = [a - b for a, b in zip(after, before, strict=True)]
        assert all(n > 0 for n in served) and sum(served) == len(spread), f"decisions per gateway: {served}"
        answers = await _kill_in_flight(topo, fleet, in_flight)
    finally:
        await fleet.close()
    fleet = _fleet(topo)  # a new client: only the survivors answer
    try:
        for req in spread:  # the same ids again: the decisions first given, none taken anew
            a, b = first[req.request_id], await _authorize(fleet, req)
            assert (a.decision_id, a.decision, a.approval_code) == (
                b.decision_id,
                b.decision,
                b.approval_code,
            )
    finally:
        await fleet.close()
    books = await issuer_books(topo)
    assert books is not None
    by_id = {b.request_id: b for b in books.books}
    for req in [*spread, *in_flight]:  # per request: the issuer holds what the acquirer was told, once
        answer = first.get(req.request_id) or answers[req.request_id]
        held = req.amount_minor if answer.decision == pb.APPROVED else 0
        assert by_id[req.request_id].final_minor == held, (req.request_id, answer, by_id[req.request_id])


def test_requests_spread_over_every_gateway_and_survive_one_killed(fleet: Topology) -> None:
    """Each gateway decides some; gateway 0 killed with requests in flight: every one answered by the
    survivors (sent again, same request_id), the issuer holding each approval once."""
    try:
        asyncio.run(_scenario(fleet))
    finally:
        if not fleet.gateways[0].alive():
            fleet.start_gateway(0)


def test_authorize_command_over_several_targets(fleet: Topology) -> None:
    assert fleet.pki is not None
    f = fleet.pki.acquirer_files("1001")
    tls = ["--cert", str(f.cert), "--key", str(f.key), "--ca", str(f.ca)]
    targets = ",".join(_targets(fleet))
    argv = ["authorize", "--target", targets, "--pan", CardMix(cards=1).pans[0], "--amount", "5", *tls]
    refused = run_authgw(argv)
    assert refused.returncode != 0 and "--server-name" in refused.stderr, refused.stderr
    done = run_authgw([*argv, "--server-name", GATEWAY_SERVER_NAME])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["request_id"]


def test_authorize_command_names_a_bad_target(tmp_path: Path) -> None:
    done = run_authgw(["authorize", "--target", "127.0.0.1:1,gw.example:2", "--pan", "4111", "--amount", "1"])
    assert done.returncode != 0
    assert "--target" in done.stderr and "gw.example:2" in done.stderr


def test_fleet_target_forms_and_errors() -> None:
    """One address stays as given; several become one ipv4:/ipv6: target; bad ones name the field."""
    assert fleet_target(["gw.example:50051"]) == "gw.example:50051"
    assert fleet_target(["127.0.0.1:1", "127.0.0.2:2"]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert fleet_target(["[::1]:1", "[::2]:2"]) == "ipv6:[::1]:1,[::2]:2"
    for bad, says in (
        (["127.0.0.1:1", "[::1]:2"], "mixes IPv4 and IPv6"),
        (["127.0.0.1:1", "127.0.0.1"], "not host:port"),
        ([], "at least one"),
    ):
        with pytest.raises(ValueError, match=says) as err:
            fleet_target(bad, "--target")
        assert str(err.value).startswith("--target:")
