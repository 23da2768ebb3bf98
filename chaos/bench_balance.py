"""What keeping issuer-reported balances costs on the issuer path: interleaved rounds, before/after.

One TLS topology (one issuer host, Redis, one gateway). Each round runs the same closed-loop load
twice, in alternating order: the issuer simulator without balances ("off": the gateway's feed only
tests a field) and with them ("on": every answer carries available_balance_minor, queued by the
gateway and written to the card's slot by its background task). The table gives p50/p99 of the
acquirer's Authorize latency per mode: median over the rounds and the spread (min-max).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.card_profiles import WELL_KNOWN_TEST_PANS
from chaos.topology import Topology, TopologySpec

_PANS = sorted(WELL_KNOWN_TEST_PANS)  # never exhausted: every answer is an approval with a balance
_ids = itertools.count()


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _round(stub: pb_grpc.AuthorizationStub, requests: int, concurrency: int) -> list[float]:
    """Latencies (ms) of `requests` authorizations, `concurrency` at a time."""
    latencies: list[float] = []

    async def worker(share: int) -> None:
        for _ in range(share):
            n = next(_ids)
            request = pb.AuthorizeRequest(
                request_id=f"bb-{n}", acquirer_id="1001", pan=_PANS[n % len(_PANS)], amount_minor=100,
                currency="EUR", mcc="5411", channel=pb.POS_CHIP, merchant_id="M1", terminal_id="T1",
                merchant_country="FR", pin_verified=True,
            )  # fmt: skip
            start = time.perf_counter()
            answer = await stub.Authorize(request, timeout=5)
            latencies.append((time.perf_counter() - start) * 1000)
            if answer.source != pb.ISSUER:
                raise RuntimeError(f"not an issuer answer: {answer}")

    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return latencies


async def run(
    rounds: int, requests: int, concurrency: int, workdir: Path
) -> dict[str, list[tuple[float, float]]]:
    """{mode: [(p50, p99) per round]}."""
    topo = Topology(workdir, TopologySpec(pools={"primary": ("a1",)}, redis=True))
    await asyncio.to_thread(topo.start)
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    try:
        async with (
            topo.acquirer_channel(topo.gateways[0].address) as channel,
            topo.sim_control("a1") as control,
        ):
            stub = pb_grpc.AuthorizationStub(channel)
            await _round(stub, requests // 4, concurrency)  # warm-up
            for r in range(rounds):
                order = ("off", "on") if r % 2 == 0 else ("on", "off")
                for mode in order:
                    await control.set_faults(send_balance=mode == "on")
                    lat = await _round(stub, requests, concurrency)
                    results[mode].append((_quantile(lat, 0.5), _quantile(lat, 0.99)))
    finally:
        await asyncio.to_thread(topo.stop)
    return results


def _table(results: dict[str, list[tuple[float, float]]], requests: int, concurrency: int) -> Table:
    table = Table(
        title=f"issuer path, {requests} Authorize x {len(results['off'])} rounds, concurrency {concurrency}"
    )
    for column in ("balances", "p50 ms (median)", "p50 spread", "p99 ms (median)", "p99 spread"):
        table.add_column(column)
    for mode, rows in results.items():
        p50s, p99s = [p for p, _ in rows], [p for _, p in rows]
        table.add_row(
            mode, f"{statistics.median(p50s):.2f}", f"{min(p50s):.2f}-{max(p50s):.2f}",
            f"{statistics.median(p99s):.2f}", f"{min(p99s):.2f}-{max(p99s):.2f}",
        )  # fmt: skip
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench_balance", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (each: off and on)")
    parser.add_argument("--requests", type=int, default=2000, help="authorizations per mode and round")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-balance-"))
    try:
        results = asyncio.run(run(args.rounds, args.requests, args.concurrency, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    Console(width=120).print(_table(results, args.requests, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
