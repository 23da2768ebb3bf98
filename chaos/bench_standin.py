"""`make bench-standin`: stand-in decisions through the gateway, Redis on loopback.

Every issuer host is hung (SIGSTOP) so the gateway is in stand-in mode, then
open-loop load at fixed rates measures the end-to-end decision latency an
acquirer sees (validation, stand-in policy, one Redis script, the journal
append) and how many decisions per second were answered.

    python -m chaos.bench_standin [--rates 500,1000] [--seconds 10] [--gateway-workers 1] [--risk]
    python -m chaos.bench_standin --compare 5 --rates 500     (make bench-standin-compare)

With --gateway-workers N the gateway runs N processes on its port (serve --workers),
each a stand-in engine of its own sharing Redis. With --risk the policy has an exposure
budget and merchant and terminal velocity windows (never reached: what they cost, not
what they decline). --compare N runs card limits only, the risk policy, and the risk policy with
the known-balance lift, on three topologies, N interleaved rounds at the first rate, and prints
the median and spread of each (before / after the risk checks).
Each rate also reports the Redis commands per stand-in decision
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
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chaos.bench_openloop import METHOD_GATEWAY, LoadPool, LoadSpec
from chaos.bench_tables import spread_text
from chaos.load import CardMix, run_open_loop
from chaos.report import summarize
from chaos.topology import Topology, TopologySpec

__all__ = ["main"]

# Checks a decision pays for, sized never to decline: an hourly budget far above the run's
# approvals and windows far above 500 requests/s spread over 1,000 merchants. LIFT_POLICY: the
# known-balance lift on top (no balance is known here: what it costs is the second static
# assessment and the fleet-wide steps for requests only the generic limits decline).
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
LIFT_POLICY = "[policy.known_balance]\nlimit_scale = 3.0\n"


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


@dataclass(frozen=True, slots=True)
class Measured:
    """One rate's run against one topology."""

    rate: int
    answered_per_s: float
    failed: int
    standin_share: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    commands_per_decision: float
    evalsha_per_decision: float


async def _start(workdir: Path, workers: int, *, policy: str, console: Console) -> Topology:
    """A topology with every issuer host hung, warmed up into stand-in mode."""
    # Plaintext, said: the load workers speak plaintext gRPC (TLS's cost is bench_tls's); since the
    # topology became mutual TLS by default they could not connect and the benchmark failed.
    spec = TopologySpec(redis=True, gateway_workers=workers, standin_policy_toml=policy, tls=False)
    topo = await asyncio.to_thread(Topology(workdir, spec).start)
    for sim in topo.sims.values():
        sim.signal(signal.SIGSTOP)
    mix = CardMix(cards=20_000, seed=11)
    console.log(f"warming up ({workdir.name}): every issuer host hung, waiting for stand-in mode")
    await run_open_loop(topo.gateways[0].address, rate_per_s=100, duration_s=3, make_request=mix.request)
    return topo


async def _measure(topo: Topology, pool: LoadPool, rate: int, seconds: float, console: Console) -> Measured:
    await _reset_stats(topo)
    result = await pool.run(LoadSpec(topo.gateways[0].address, METHOD_GATEWAY, rate, seconds))
    calls = await _command_calls(topo)
    s = summarize(result.samples)
    decided = max(1, s.by_source.get("STAND_IN", 0))
    console.log(f"{rate}/s: redis commands {dict(sorted(calls.items(), key=lambda kv: -kv[1]))}")
    console.log(
        f"{rate}/s: p50 {s.p50_ms:.2f} ms, p99 {s.p99_ms:.2f} ms, {s.failed} failed, "
        f"generator lag up to {result.max_lag_s * 1000:.1f} ms"
    )
    return Measured(
        rate, s.answered / seconds, s.failed, s.by_source.get("STAND_IN", 0) / max(1, s.answered),
        s.p50_ms, s.p99_ms, s.max_ms, sum(calls.values()) / decided, calls.get("evalsha", 0) / decided,
    )  # fmt: skip


# the benchmark's load generator: worker processes on uvloop, so the generator's own scheduling
# lag stays out of the measured latency as far as 2 cores allow
def _load_pool() -> LoadPool:
    return LoadPool(workers=2, rate_per_process=1000.0)


async def _bench(
    rates: list[int], seconds: float, workers: int, workdir: Path, console: Console, *, risk: bool
) -> Table:
    topo = await _start(workdir, workers, policy=RISK_POLICY if risk else "", console=console)
    try:
        table = Table(
            title=f"stand-in through the gateway ({seconds:.0f} s per rate, {workers} gateway process"
            f"{'es' if workers > 1 else ''}, Redis AOF always on loopback)"
        )
        cols = ("rate/s", "answered/s", "failed", "stand-in share", "p50 ms", "p99 ms", "max ms")
        for col in (*cols, "redis cmds/dec", "evalsha/dec"):
            table.add_column(col, justify="right")
        pool = _load_pool()
        for rate in rates:
            m = await _measure(topo, pool, rate, seconds, console)
            table.add_row(
                str(rate), f"{m.answered_per_s:.0f}", str(m.failed), f"{m.standin_share:.1%}",
                f"{m.p50_ms:.2f}", f"{m.p99_ms:.2f}", f"{m.max_ms:.1f}",
                f"{m.commands_per_decision:.2f}", f"{m.evalsha_per_decision:.2f}",
            )  # fmt: skip
        return table
    finally:
        await asyncio.to_thread(topo.stop)


async def _compare(rate: int, seconds: float, rounds: int, workdir: Path, console: Console) -> Table:
    """Card limits only ("before") against the risk policy ("after", and with the known-balance lift):
    three topologies, interleaved
    rounds at `rate` (the order alternates each round), median [min-max] over the rounds."""
    topos = {
        "before (card limits)": await _start(workdir / "before", 1, policy="", console=console),
        "after (budget, velocity)": await _start(workdir / "after", 1, policy=RISK_POLICY, console=console),
        "after + known-balance lift": await _start(
            workdir / "lift", 1, policy=RISK_POLICY + LIFT_POLICY, console=console
        ),
    }
    runs: dict[str, list[Measured]] = {name: [] for name in topos}
    try:
        pool = _load_pool()
        for r in range(rounds):
            names = list(topos) if r % 2 == 0 else list(reversed(topos))
            for name in names:
                console.log(f"round {r + 1}/{rounds}: {name}")
                runs[name].append(await _measure(topos[name], pool, rate, seconds, console))
    finally:
        for topo in topos.values():
            await asyncio.to_thread(topo.stop)
    table = Table(
        title=f"stand-in decisions at {rate}/s, {rounds} interleaved rounds of {seconds:.0f} s "
        "(median, min-max in brackets)"
    )
    for col in ("policy", "answered/s", "failed", "p50 ms", "p99 ms", "redis cmds/dec", "evalsha/dec"):
        table.add_column(col, justify="right")
    for name, ms in runs.items():
        table.add_row(
            name, spread_text([m.answered_per_s for m in ms], ".0f"), str(sum(m.failed for m in ms)),
            spread_text([m.p50_ms for m in ms]), spread_text([m.p99_ms for m in ms]),
            spread_text([m.commands_per_decision for m in ms]),
            spread_text([m.evalsha_per_decision for m in ms]),
        )  # fmt: skip
    return table


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
    parser.add_argument(
        "--compare",
        type=int,
        metavar="ROUNDS",
        help="card limits only against --risk's policy: ROUNDS interleaved rounds at the first rate",
    )
    args = parser.parse_args(argv)
    console = Console(width=max(110, shutil.get_terminal_size().columns))
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-standin-"))
    rates = [int(r) for r in args.rates.split(",")]
    try:
        if args.compare:
            table = asyncio.run(_compare(rates[0], args.seconds, args.compare, workdir, console))
        else:
            table = asyncio.run(
                _bench(rates, args.seconds, args.gateway_workers, workdir, console, risk=args.risk)
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
