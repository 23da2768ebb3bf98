"""`make bench-standin`: stand-in decisions through the gateway, Redis on loopback.

Every issuer host is hung (SIGSTOP) so the gateway is in stand-in mode, then
open-loop load at fixed rates measures the end-to-end decision latency an
acquirer sees (validation, stand-in policy, one Redis script, the journal
append) and how many decisions per second were answered.

    python -m chaos.bench_standin [--rates 500,1000] [--seconds 10] [--gateway-workers 1] [--risk]

With --gateway-workers N the gateway runs N processes on its port (serve --workers),
each a stand-in engine of its own sharing Redis. With --risk the policy has an exposure
budget and merchant and terminal velocity windows (never reached: what they cost, not
what they decline). Each rate also reports the Redis commands per stand-in decision
(INFO commandstats after CONFIG RESETSTAT; scripts count once, as EVALSHA), the
settlement worker's and metrics sampler's included.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chaos.bench_openloop import METHOD_GATEWAY, LoadPool, LoadSpec
from chaos.load import CardMix, run_open_loop
from chaos.report import summarize
from chaos.topology import Topology, TopologySpec

__all__ = ["main"]

# Checks a decision pays for, sized never to decline: an hourly budget far above the run's
# approvals and windows far above 500 requests/s spread over 1,000 merchants.
RISK_POLICY = """
[[policy.exposure_budgets]]
period = "1h"
max_amount_minor = 1_000_000_000_000
[policy.velocity]
window_length = "1m"
[policy.velocity.merchant]
max_count = 1_000_000
[policy.velocity.terminal]
max_count = 1_000_000
"""


async def _command_calls(topo: Topology) -> dict[str, int]:
    """Calls per Redis command since the last CONFIG RESETSTAT."""
    admin = topo.redis_admin()
    try:
        stats = await admin.info("commandstats")
    finally:
        await admin.aclose()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def _reset_stats(topo: Topology) -> None:
    admin = topo.redis_admin()
    try:
        await admin.config_resetstat()
    finally:
        await admin.aclose()


async def _bench(
    rates: list[int], seconds: float, workers: int, workdir: Path, console: Console, *, risk: bool
) -> Table:
    # Plaintext, said: the load workers speak plaintext gRPC (TLS's cost is bench_tls's); since the
    # topology became mutual TLS by default they could not connect and the benchmark failed.
    policy = RISK_POLICY if risk else ""
    spec = TopologySpec(redis=True, gateway_workers=workers, standin_policy_toml=policy, tls=False)
    topo = await asyncio.to_thread(Topology(workdir, spec).start)
    try:
        target = topo.gateways[0].address
        for sim in topo.sims.values():
            sim.signal(signal.SIGSTOP)
        mix = CardMix(cards=20_000, seed=11)
        console.log("warming up: every issuer host hung, waiting for stand-in mode")
        await run_open_loop(target, rate_per_s=100, duration_s=3, make_request=mix.request)
        table = Table(
            title=f"stand-in through the gateway ({seconds:.0f} s per rate, {workers} gateway process"
            f"{'es' if workers > 1 else ''}, Redis AOF always on loopback)"
        )
        cols = (
            "rate/s",
            "answered/s",
            "failed",
            "stand-in share",
            "p50 ms",
            "p99 ms",
            "max ms",
            "redis cmds/dec",
        )
        for col in (*cols, "evalsha/dec"):
            table.add_column(col, justify="right")
        # the benchmark's load generator: worker processes on uvloop, so the generator's own
        # scheduling lag stays out of the measured latency as far as 2 cores allow
        pool = LoadPool(workers=2, rate_per_process=1000.0)
        for rate in rates:
            await _reset_stats(topo)
            result = await pool.run(LoadSpec(target, METHOD_GATEWAY, rate, seconds))
            calls = await _command_calls(topo)
            s = summarize(result.samples)
            share = s.by_source.get("STAND_IN", 0) / max(1, s.answered)
            decided = max(1, s.by_source.get("STAND_IN", 0))
            table.add_row(
                str(rate),
                f"{s.answered / seconds:.0f}",
                str(s.failed),
                f"{share:.1%}",
                f"{s.p50_ms:.2f}",
                f"{s.p99_ms:.2f}",
                f"{s.max_ms:.1f}",
                f"{sum(calls.values()) / decided:.2f}",
                f"{calls.get('evalsha', 0) / decided:.2f}",
            )
            console.log(f"{rate}/s: redis commands {dict(sorted(calls.items(), key=lambda kv: -kv[1]))}")
            console.log(
                f"{rate}/s: p50 {s.p50_ms:.2f} ms, p99 {s.p99_ms:.2f} ms, {s.failed} failed, "
                f"generator lag up to {result.max_lag_s * 1000:.1f} ms"
            )
        return table
    finally:
        await asyncio.to_thread(topo.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench_standin", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rates", default="500,1000", help="comma-separated request rates")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--gateway-workers", type=int, default=1, help="gateway processes (serve --workers)")
    parser.add_argument(
        "--risk", action="store_true", help="exposure budget and velocity windows in the policy"
    )
    args = parser.parse_args(argv)
    console = Console(width=max(110, shutil.get_terminal_size().columns))
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-standin-"))
    try:
        table = asyncio.run(
            _bench(
                [int(r) for r in args.rates.split(",")],
                args.seconds,
                args.gateway_workers,
                workdir,
                console,
                risk=args.risk,
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
