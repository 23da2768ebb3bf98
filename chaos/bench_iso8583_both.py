"""The ISO 8583 path end to end beside the gRPC path, open loop, interleaved rounds: `make bench-iso8583`.

    python -m chaos.bench_iso8583_both [--rates 500,1000] [--rounds 3] [--seconds 4]

Two topologies side by side, each one gateway process (`authgw serve`) and one issuer simulator,
mutual TLS on every link (the default): the gRPC path (gRPC acquirer -> gateway -> gRPC issuer
host) and the ISO 8583 path (ISO 8583 acquirer on the gateway's [iso8583_listen] -> gateway ->
ISO 8583 issuer host, `protocol = "iso8583"`). The load is the chaos load generator's acquirer
(`chaos.acquirer.Acquirer`, its gRPC or ISO 8583 transport) at a fixed rate, open loop. For each
rate, rounds alternate which path goes first. Per path and rate it prints the median and spread
(min - max) over rounds of: answers/s, p50 / p99 latency (ms), and the gateway's CPU per answer
(utime + stime of the gateway process from /proc over the round, in microseconds), and the share
of answers an issuer decided (not 91: no stand-in here, so 91 means no issuer in time). Numbers only:
the machine is shared, and the load generator is Python on the same machine (its own CPU limits
the ISO 8583 path first: it encodes and decodes with the same pure-Python layer).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from chaos.acquirer import Acquirer
from chaos.acquirer_iso8583 import IsoGatewayStubs
from chaos.bench_cpu import cpu_seconds
from chaos.load import CardMix
from chaos.topology import Topology, TopologySpec

__all__ = ["main"]

PATHS = ("grpc", "iso8583")
_DEADLINE_S = 2.0
_NO_ISSUER = "91"  # the gateway's decline when no issuer answered (no stand-in here)

# answers/s, p50 ms, p99 ms, gateway CPU us per answer, % of the answers an issuer decided (not 91)
Round = tuple[float, float, float, float, float]


def _topology(workdir: Path, path: str) -> Topology:
    iso = path == "iso8583"
    spec = TopologySpec(
        pools={"primary": ("a1",)}, iso8583_issuers=iso, iso8583_acquirers=iso, sim_args=("--uvloop",)
    )
    return Topology(workdir / path, spec).start()


def _acquirer(topo: Topology) -> Acquirer:
    targets = [g.address for g in topo.gateways]
    if not topo.spec.iso8583_acquirers:
        return Acquirer(targets, deadline_s=_DEADLINE_S, credentials=topo.acquirer_credentials)
    stubs = IsoGatewayStubs(topo.iso8583_targets, topo.acquirer_ssl)
    return Acquirer(targets, deadline_s=_DEADLINE_S, stubs=stubs)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def one_round(topo: Topology, rate: float, seconds: float) -> Round:
    """One open-loop run at `rate`: what the gateway answered and what it cost."""
    mix = CardMix(cards=400)
    gateway = topo.gateways[0].pid
    async with _acquirer(topo) as acquirer:
        cpu0, t0 = cpu_seconds(gateway), time.monotonic()
        samples = await acquirer.run(rate, seconds, mix.request)
        cpu, elapsed = cpu_seconds(gateway) - cpu0, time.monotonic() - t0
    latencies = [s.latency_s * 1000 for s in samples if s.answered]
    answered = len(latencies)
    per_answer = cpu / answered * 1e6 if answered else float("nan")
    decided = sum(1 for s in samples if s.answered and s.response_code != _NO_ISSUER)
    issuer_pct = 100.0 * decided / answered if answered else 0.0
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    return answered / elapsed, p50, p99, per_answer, issuer_pct


def _line(path: str, rate: float, rounds: Sequence[Round]) -> str:
    cells = []
    for i, unit in enumerate(("answers/s", "p50 ms", "p99 ms", "gw CPU us/answer", "issuer-decided %")):
        values = [r[i] for r in rounds]
        cells.append(f"{unit} {statistics.median(values):8.1f} ({min(values):.1f}-{max(values):.1f})")
    return f"{path:8} {rate:6.0f}/s  " + "  ".join(cells)


async def bench(rates: Sequence[float], rounds: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-iso8583-") as tmp:
        topos = {path: _topology(Path(tmp), path) for path in PATHS}
        try:
            await asyncio.sleep(1.0)  # links up
            for path in PATHS:  # warm-up: connections, TLS sessions, caches
                await one_round(topos[path], 100, 1.0)
            results: dict[tuple[str, float], list[Round]] = {}
            for rate in rates:
                for r in range(rounds):
                    order = PATHS if r % 2 == 0 else PATHS[::-1]
                    for path in order:
                        measured = await one_round(topos[path], rate, seconds)
                        results.setdefault((path, rate), []).append(measured)
            print(f"median (min-max) over {rounds} rounds of {seconds:g} s, interleaved, mutual TLS")
            for (path, rate), values in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                print(_line(path, rate, values))
        finally:
            for topo in topos.values():
                topo.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.bench_iso8583_both", description=__doc__)
    parser.add_argument("--rates", default="500,1000", help="open-loop rates, requests/s, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="load per round")
    args = parser.parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates: {args.rates!r} is not comma-separated numbers")
    if args.rounds < 1 or args.seconds <= 0 or any(r <= 0 for r in rates):
        parser.error("--rounds must be >= 1, --seconds and every rate > 0")
    asyncio.run(bench(rates, args.rounds, args.seconds))


if __name__ == "__main__":
    main()
