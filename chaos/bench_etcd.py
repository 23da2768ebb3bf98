"""etcd's load per gateway and per health agent, for `make bench-scale` (chaos/bench_scale.py).

chaos.topology with etcd, 4 health agents and plaintext links: etcd's gRPC messages received
per second (grpc_server_msg_received_total on its /metrics: a unary request is one message,
a LeaseKeepAlive or Watch stream counts each message) and its CPU, over windows with 1 gateway,
then over windows with 2 (one start of the second gateway: on this shared machine a gateway
once took more than start_authgw's 15 s to listen, and the load is steady). The difference is
one gateway's share; the rest divided by the agents is one agent's.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from chaos.bench_cpu import cpu_seconds
from chaos.bench_tables import spread
from chaos.topology import Topology, TopologySpec

__all__ = ["measure_etcd"]


def _etcd_counts(url: str) -> Counter[str]:
    """etcd's gRPC messages received so far, per method."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:  # noqa: S310 (loopback http)
        text = reply.read().decode()
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "grpc_server_msg_received":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["grpc_method"]] += int(sample.value)
    return out


async def _etcd_window(topo: Topology, window_s: float) -> tuple[Counter[str], float]:
    """Messages per second per method, and etcd's CPU (cores busy), over one window."""
    url, etcd = topo.etcd_endpoints[0], topo.etcd[0]
    before, cpu0, t0 = await asyncio.to_thread(_etcd_counts, url), cpu_seconds(etcd.pid), time.monotonic()
    await asyncio.sleep(window_s)
    after, cpu1, t1 = await asyncio.to_thread(_etcd_counts, url), cpu_seconds(etcd.pid), time.monotonic()
    rate = Counter({k: (after[k] - before[k]) / (t1 - t0) for k in after})
    return rate, (cpu1 - cpu0) / (t1 - t0)


async def measure_etcd(workdir: Path, console: Console, *, rounds: int, window_s: float) -> dict[str, Any]:
    """etcd's messages/s and CPU with 1 gateway and with 2, per gateway and per agent."""
    topo = Topology(workdir / "topo", TopologySpec(etcd=True, tls=False, gateways=1))
    agents = len(topo.pool_of)
    one: list[tuple[Counter[str], float]] = []
    two: list[tuple[Counter[str], float]] = []
    try:
        await asyncio.to_thread(topo.start)
        await asyncio.sleep(2.0)  # registrations and watch creations are not in a window
        for _ in range(rounds):
            one.append(await _etcd_window(topo, window_s))
        # One start of the second gateway, not one per round: on this shared machine a gateway
        # process once took more than start_authgw's 15 s to listen, and the load is steady.
        await asyncio.to_thread(topo.start_gateway, 1)
        await asyncio.sleep(2.0)  # its start (first read, watch creation) is not in a window
        for _ in range(rounds):
            two.append(await _etcd_window(topo, window_s))
        console.log(
            f"etcd: {statistics.median(sum(r.values()) for r, _ in one):.1f} msgs/s with 1 gateway, "
            f"{statistics.median(sum(r.values()) for r, _ in two):.1f} with 2"
        )
    finally:
        await asyncio.to_thread(topo.stop)
    per_gateway = [sum(b[0].values()) - sum(a[0].values()) for a, b in zip(one, two, strict=True)]
    per_agent = [(sum(a[0].values()) - g) / agents for a, g in zip(one, per_gateway, strict=True)]
    methods = sorted({m for rate, _ in one + two for m in rate})
    return {
        "method": f"one etcd, {agents} health agents, 1 then 2 gateways (plaintext; the windows with 1 "
        "gateway first, then those with 2: one gateway start, see _etcd); windows of "
        f"{window_s:.0f} s; grpc_server_msg_received_total from etcd's /metrics (a unary "
        "request is one message; LeaseKeepAlive and Watch streams count each message)",
        "rounds": rounds,
        "agents": agents,
        "messages_per_s_1_gateway": spread([sum(r.values()) for r, _ in one], 2),
        "messages_per_s_2_gateways": spread([sum(r.values()) for r, _ in two], 2),
        "by_method_1_gateway": _by_method(one, methods),
        "by_method_2_gateways": _by_method(two, methods),
        "per_gateway_messages_per_s": spread(per_gateway, 2),
        "per_agent_messages_per_s": spread(per_agent, 2),
        "etcd_cpu_cores_1_gateway": spread([c for _, c in one], 4),
        "etcd_cpu_cores_2_gateways": spread([c for _, c in two], 4),
    }


def _by_method(windows: Sequence[tuple[Counter[str], float]], methods: Sequence[str]) -> dict[str, float]:
    """Median messages/s per method over the windows, methods never called left out."""
    medians = {m: round(statistics.median(rate[m] for rate, _ in windows), 3) for m in methods}
    return {m: v for m, v in medians.items() if v}
