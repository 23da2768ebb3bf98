"""The metrics operators read in `authgw top` and the dashboard: routing mode, requests by edge, pools.

A GatewayMetrics over a real Router and StandInMode, collected by the SDK's in-memory reader (the
instruments the Prometheus endpoint exports). Running gateways are in tests/test_top.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.metrics import EDGE_GRPC, ROUTING_MODES, GatewayMetrics
from gateway.router import PoolSpec, Router
from gateway.standin_mode import StandInMode
from health import Mode
from tests.gateway_fixtures import gateway_config


@dataclass
class Rig:
    router: Router
    standin: StandInMode
    metrics: GatewayMetrics
    reader: InMemoryMetricReader
    mode: list[Mode]

    def points(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Metric `name` now: sorted label pairs -> value."""
        data = self.reader.get_metrics_data()
        assert data is not None
        out: dict[tuple[tuple[str, str], ...], float] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            labels = tuple(sorted((k, str(v)) for k, v in (point.attributes or {}).items()))
                            out[labels] = point.value  # type: ignore[union-attr]
        return out


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """Pools primary (two members) and secondary (one), a mode an operator can set."""
    cfg = gateway_config([("primary", ["127.0.0.1:1", "127.0.0.1:2"]), ("secondary", ["127.0.0.1:3"])])
    router = Router(cfg)
    standin = StandInMode(router)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    mode = [Mode.AUTO]
    metrics = GatewayMetrics(
        provider.get_meter("test"),
        router,
        standin,
        mode=lambda: mode[0],
        configured_pools=[p.name for p in cfg.pools],
    )
    yield Rig(router, standin, metrics, reader, mode)
    provider.shutdown()
    await router.close()


def _mode_now(rig: Rig) -> str:
    points = rig.points("authgw.routing.mode")
    assert {dict(k)["mode"] for k in points} == set(ROUTING_MODES)
    (now,) = [dict(k)["mode"] for k, v in points.items() if v == 1]
    return now


async def test_routing_mode_follows_standin_and_the_operator(rig: Rig) -> None:
    """issuer, then stand-in when the gateway enters it; an operator's forced mode wins over both."""
    assert _mode_now(rig) == "issuer"
    rig.standin.active = True
    assert _mode_now(rig) == "stand-in"
    rig.mode[0] = Mode.FORCE_ISSUER
    assert _mode_now(rig) == "forced-issuer"
    rig.mode[0] = Mode.FORCE_STANDIN
    rig.standin.active = False
    assert _mode_now(rig) == "forced-standin"


async def test_requests_counted_by_edge(rig: Rig) -> None:
    """Each request an edge receives is counted under its edge."""
    for _ in range(3):
        rig.metrics.received[EDGE_GRPC] += 1
    rig.metrics.received["iso8583"] += 1
    assert rig.points("authgw.requests") == {(("edge", "grpc"),): 3, (("edge", "iso8583"),): 1}


async def test_a_pool_whose_members_all_left_is_exported_with_zeros(rig: Rig) -> None:
    """etcd lists no member of secondary: it leaves the router, its series stay, at 0."""
    primary = rig.router.pools[0]
    rig.router.apply({"primary": PoolSpec(tuple((m.name, m.address, 1) for m in primary.members.values()))})
    assert [p.name for p in rig.router.pools] == ["primary"]
    members = rig.points("authgw.pool.members")
    assert members[(("pool", "secondary"), ("state", "healthy"))] == 0
    assert members[(("pool", "primary"), ("state", "healthy"))] == 2
    assert rig.points("authgw.members.ejected")[(("pool", "secondary"),)] == 0
    assert rig.points("authgw.pool.drained")[(("pool", "secondary"),)] == 0
    states = rig.points("authgw.member.state")
    assert {dict(k)["pool"] for k in states} == {"primary"}
    assert states[(("member", "primary-0"), ("pool", "primary"), ("state", "healthy"))] == 1
    assert states[(("member", "primary-0"), ("pool", "primary"), ("state", "ejected"))] == 0
