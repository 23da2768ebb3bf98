"""What the operator metrics cost: per request on the event loop, and per Prometheus scrape.

Per request the gateway's edges now add one to a plain dict (`authgw.requests` {edge}); this
times that statement beside record_decision (the one counter add and histogram record every
answer already paid), in the same process, interleaved rounds, median and spread. Per scrape,
the collection of every instrument of a GatewayMetrics over a router of P pools of M members (the
reader's thread holds the GIL while it runs, so the loop waits that long once per scrape).
Times are this process's CPU time (process_time), not wall time: the machine is shared.

    python -m chaos.bench_metrics [--rounds 7] [--calls 200000] [--pools 4] [--members 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from authgw.v1 import authorization_pb2 as pb
from chaos.pki import PLAINTEXT
from gateway.config import parse_config
from gateway.metrics import EDGE_GRPC, GatewayMetrics
from gateway.router import Router
from gateway.standin_mode import StandInMode

__all__ = ["main"]


def _router(pools: int, members: int) -> Router:
    data: dict[str, object] = {
        "gateway": {"listen": "127.0.0.1:1", "instance": "bench"},
        "pools": [
            {
                "name": f"pool{p}",
                "priority": p + 1,
                "members": [
                    {"name": f"m{p}-{m}", "address": f"127.0.0.1:{1000 + m}"} for m in range(members)
                ],
            }
            for p in range(pools)
        ],
        **{section: dict(values) for section, values in PLAINTEXT.items()},
    }
    return Router(parse_config(data, "<bench>"))


def _ns_per_call(fn: Callable[[], None], calls: int) -> float:
    started = time.process_time_ns()
    for _ in range(calls):
        fn()
    return (time.process_time_ns() - started) / calls


def _line(name: str, samples: Sequence[float], unit: str) -> str:
    spread = f"(min {min(samples):.1f}, max {max(samples):.1f})"
    return f"{name:<52} median {statistics.median(samples):9.1f} {unit}  {spread}"


async def run(rounds: int, calls: int, pools: int, members: int) -> None:
    router = _router(pools, members)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = GatewayMetrics(provider.get_meter("bench"), router, StandInMode(router))
    answer = pb.AuthorizeResponse(source=pb.ISSUER, response_code="00")
    received = metrics.received

    def count() -> None:
        if metrics is not None:  # as the edges do it
            received[EDGE_GRPC] += 1

    def decision() -> None:
        metrics.record_decision(answer, 0.002)

    def observe_new() -> None:
        for callback in (
            metrics._received,
            metrics._pool_members,
            metrics._member_states,
            metrics._routing_mode,
        ):
            list(callback(None))  # type: ignore[arg-type]  # options are not read

    new, old = "per request: requests counter (new)", "per request: record_decision (existing)"
    observers, collection = (
        "per scrape: the new observers",
        f"per scrape: all, {pools} pools x {members} members",
    )
    samples: dict[str, list[float]] = {new: [], old: [], observers: [], collection: []}
    for _ in range(rounds):  # interleaved: drift on a shared machine hits each alike
        samples[new].append(_ns_per_call(count, calls))
        samples[old].append(_ns_per_call(decision, calls))
        samples[observers].append(_ns_per_call(observe_new, 100) / 1000)
        samples[collection].append(_ns_per_call(reader.get_metrics_data, 20) / 1000)  # type: ignore[arg-type]
    for name, values in samples.items():
        print(_line(name, values, "ns" if name.startswith("per request") else "us"))
    provider.shutdown()
    await router.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench_metrics", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--pools", type=int, default=4)
    parser.add_argument("--members", type=int, default=8)
    args = parser.parse_args(argv)
    asyncio.run(run(args.rounds, args.calls, args.pools, args.members))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
