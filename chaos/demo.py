"""`make demo`: the 30 August outage replayed on a local topology, compressed to about a minute.

Normal traffic; the primary pool goes down (one host SIGKILLed, one
SIGSTOPped); then every issuer host hangs (stand-in takes over, decisions
journaled in Redis); then every host comes back, the issuer answers again and
settlement replays every stand-in decision to it. The acquirer reverses one
approval in twenty (half of them partially; stored during the outage and
forwarded behind the card's stand-in decisions) and sends a timeout reversal
for every request left unanswered, until acknowledged. At the end every
request's book at the issuer is checked against what the acquirer holds
(`chaos.verify`: six money figures, each must be 0). A live status line while
it runs; a summary table per phase, the money table and a timeline picture at
the end. Everything started is stopped by PID, whatever happens.

The gateway exports Prometheus metrics: once the topology is up the demo prints
the `authgw top` command line that watches it (its endpoint, etcd with the
operator's certificate, the Redis journal through the gateway's config) and
writes it to chaos/reports/demo-top.sh, which `make demo-top` runs from another
terminal or tmux pane. `--hold S` waits S seconds before the traffic starts.

    python -m chaos.demo [--rate 100] [--scale 1.0] [--hold 0] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from chaos.acquirer import Acquirer, AcquirerBehaviour
from chaos.load import CardMix
from chaos.report import Phase, live_line, plot_timeline, summarize, summary_table
from chaos.samples import Sample
from chaos.topology import Topology, TopologySpec
from chaos.verify import MoneyCheck, verify_settlement

__all__ = ["main"]

REPORTS = Path(__file__).resolve().parent / "reports"
REVERSE_SHARE = 0.05  # approvals the acquirer reverses afterwards (half of them partially), outage or not
TOP_SCRIPT = REPORTS / "demo-top.sh"  # what `make demo-top` runs


def top_command(topo: Topology) -> list[str]:
    """`authgw top` on the demo's gateways: their metrics, etcd as the operator, the Redis journal."""
    authgw = Path(sys.executable).with_name("authgw")
    command = [str(authgw)] if authgw.exists() else [sys.executable, "-m", "gateway.cli"]
    command += ["top", *(arg for url in topo.metrics_urls for arg in ("--metrics", url))]
    return [*command, *topo.etcd_args("operator"), "--config", str(topo.workdir / "gateway-1.toml")]


def _announce_top(topo: Topology, console: Console) -> None:
    line = shlex.join(top_command(topo))
    REPORTS.mkdir(exist_ok=True)
    TOP_SCRIPT.write_text(f"#!/bin/sh\n# written by make demo: watch its gateway live\nexec {line}\n")
    console.log("watch it live from another terminal or tmux pane: make demo-top, which runs")
    console.print(line, soft_wrap=True, markup=False, highlight=False)


def _phases(scale: float) -> list[Phase]:
    marks = [("normal traffic", 0, 8, False), ("primary pool down", 8, 18, True)]
    marks += [("every pool hangs", 18, 36, True), ("issuer back", 36, 46, False)]
    return [Phase(name, a * scale, b * scale, fault) for name, a, b, fault in marks]


async def _inject(topo: Topology, phases: Sequence[Phase], t0: float, console: Console) -> None:
    async def at(t: float) -> None:
        await asyncio.sleep(max(0.0, t0 + t - time.monotonic()))

    await at(phases[1].start_s)
    console.log("fault: primary host a1 SIGKILLed, a2 SIGSTOPped (hung: accepts, never answers)")
    topo.sims["a1"].kill()
    topo.sims["a2"].signal(signal.SIGSTOP)
    await at(phases[2].start_s)
    console.log("fault: every secondary host SIGSTOPped too - no issuer answers (30 August)")
    topo.sims["b1"].signal(signal.SIGSTOP)
    topo.sims["b2"].signal(signal.SIGSTOP)
    await at(phases[3].start_s)
    console.log("recovery: every host resumed, a1 restarted")
    for member in ("a2", "b1", "b2"):
        topo.sims[member].signal(signal.SIGCONT)
    await asyncio.to_thread(topo.restart_sim, "a1")  # waits for the port: not on the load's loop


def money_table(check: MoneyCheck) -> Table:
    """The six money figures (each must be 0) and what became of the stand-in decisions and reversals."""
    table = Table(
        title=f"money: every request's book at the issuer (after {check.waited_s:.0f} s of settling)"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("expected", justify="right")
    if not check.settled:  # no verdict on money: say what settlement had left
        table.add_row("[red]settlement NOT done[/]", "; ".join(check.unsettled), "done")
    for name, value in check.figures().items():
        shown = f"[{'green' if value == 0 else 'red'}]{value}[/]" if check.settled else "n/s"
        table.add_row(name, shown, "0")
    for name in ("requests", "books", "misfiled_books", "journaled", "advised", "redelivered"):
        table.add_row(name, str(getattr(check, name)), "")
    reversals = f"{check.reversals_sent} / {check.reversals_acked} / {check.reversals_applied}"
    table.add_row("reversals sent / acknowledged / applied at the issuer", reversals, "")
    return table


async def run_demo(rate: float, scale: float, workdir: Path, console: Console, hold_s: float = 0.0) -> int:
    phases = _phases(scale)
    duration = phases[-1].end_s
    console.rule("authgw demo: an issuer outage, replayed")
    console.log(
        f"starting topology in {workdir}: etcd, Redis, 2 pools x 2 issuer hosts with health agents, 1 gateway"
    )
    spec = TopologySpec(etcd=True, redis=True, metrics=True)
    topo = await asyncio.to_thread(Topology(workdir, spec).start)
    try:
        _announce_top(topo, console)
        if hold_s > 0:
            console.log(f"holding {hold_s:.0f} s before the traffic starts (--hold)")
            await asyncio.sleep(hold_s)
        mix = CardMix(cards=300)
        behaviour = AcquirerBehaviour(reverse_share=REVERSE_SHARE)
        gateway = [topo.gateways[0].address]
        async with Acquirer(gateway, behaviour, credentials=topo.acquirer_credentials) as acquirer:
            t0 = time.monotonic()
            with Live(console=console, refresh_per_second=4, transient=True) as live:

                def tick(elapsed: float, samples: list[Sample]) -> None:
                    phase = next((p.name for p in phases if p.start_s <= elapsed < p.end_s), phases[-1].name)
                    live.update(live_line(elapsed, phase, samples))

                load = asyncio.create_task(acquirer.run(rate, duration, mix.request, tick))
                await _inject(topo, phases, t0, console)
                samples = await load
            rows = [
                (p.name, summarize([s for s in samples if p.start_s <= s.sent_at < p.end_s])) for p in phases
            ]
            total = summarize(samples)
            rows.append(("all", total))
            console.print(summary_table("authgw demo: answers by phase", rows))
            check = await verify_settlement(topo, samples, 60.0, console)  # reversals still delivered
        console.print(money_table(check))
        for figure, keys in check.examples.items():
            console.print(f"  {figure}, e.g.: {', '.join(keys)}")
        picture = plot_timeline(
            REPORTS / "demo.png", "authgw demo: an issuer outage, replayed", samples, phases
        )
        console.print(f"timeline picture: {picture}")
        console.print(
            f"availability {total.availability:.2%} ({total.failed} failed of {total.requests}); "
            f"p50 {total.p50_ms:.1f} ms, p99 {total.p99_ms:.1f} ms"
        )
        return 0 if total.failed == 0 and check.ok else 1
    finally:
        TOP_SCRIPT.unlink(missing_ok=True)
        console.log("stopping every process started by the demo")
        await asyncio.to_thread(topo.stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="authorizations per second")
    parser.add_argument("--scale", type=float, default=1.0, help="stretch (>1) or compress (<1) the timeline")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--hold", type=float, default=0.0, help="seconds to wait before the traffic (start authgw top)"
    )
    args = parser.parse_args(argv)
    console = Console(width=max(130, shutil.get_terminal_size().columns))
    workdir = Path(tempfile.mkdtemp(prefix="authgw-demo-"))
    try:
        return asyncio.run(run_demo(args.rate, args.scale, workdir, console, args.hold))
    finally:
        if args.keep:
            console.print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
