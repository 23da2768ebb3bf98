"""`make bench-failover`: one gateway under open-loop load while its whole primary pool hangs.

A local topology (chaos.topology: pools primary and secondary of two issuer
hosts each, one gateway). Load at a fixed rate for `--seconds`; at 25 % of
the run every primary host is SIGSTOPped (TCP accepts, nothing answers), at
75 % they are resumed. Printed per second of send time: sent, answered,
failed, p50/p99, and who answered (pool or stand-in). Then: p99 in the first
second of the fault, and how many seconds until p99 is back to normal, after
the fault began and after the pool came back. "Normal" is at most twice the
p99 before the fault (and at least that plus 5 ms), for 3 seconds in a row.

    python -m chaos.bench_failover [--rate 300] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chaos.load import CardMix, Sample, run_open_loop
from chaos.report import Summary, summarize
from chaos.topology import Topology, TopologySpec

__all__ = ["SecondRow", "main", "per_second_rows", "seconds_to_normal", "seconds_to_primary"]

_STEADY_SECONDS = 3


@dataclass(frozen=True, slots=True)
class SecondRow:
    """Requests sent during one second of the run."""

    second: int
    summary: Summary
    fault: bool


def per_second_rows(
    samples: Sequence[Sample], fault: tuple[float, float], deadline_s: float
) -> list[SecondRow]:
    last = int(max((s.sent_at for s in samples), default=0.0))
    rows = []
    for sec in range(last + 1):
        bucket = [s for s in samples if sec <= s.sent_at < sec + 1]
        rows.append(SecondRow(sec, summarize(bucket, deadline_s), fault[0] <= sec < fault[1]))
    return rows


def normal_p99_ms(rows: Sequence[SecondRow], fault_start: int) -> float:
    """Median p99 of the seconds before the fault (the first second, with connection set-up, left out)."""
    before = [r.summary.p99_ms for r in rows[1:fault_start] if r.summary.answered] or [
        r.summary.p99_ms for r in rows[:fault_start] if r.summary.answered
    ]
    return statistics.median(before) if before else 0.0


def seconds_to_normal(rows: Sequence[SecondRow], start: int, end: int, limit_ms: float) -> int | None:
    """Seconds from `start` until p99 stays within limit_ms for 3 seconds (or until `end`); None: never."""
    for sec in range(start, end):
        window = rows[sec : min(end, sec + _STEADY_SECONDS)]
        if all(r.summary.failed == 0 and r.summary.p99_ms <= limit_ms for r in window):
            return sec - start
    return None


def seconds_to_primary(rows: Sequence[SecondRow], start: int) -> int | None:
    """Seconds from `start` until the primary pool answers most requests again; None: not in the run."""
    for r in rows[start:]:
        if r.summary.by_pool.get("primary", 0) * 2 > r.summary.requests:
            return r.second - start
    return None


def _table(rows: Sequence[SecondRow], rate: float) -> Table:
    table = Table(title=f"bench-failover: per second of send time at {rate:g}/s (primary pool hung: *)")
    for col in ("s", "sent", "answered", "failed", "p50 ms", "p99 ms", "primary", "secondary", "stand-in"):
        table.add_column(col, justify="right")
    for r in rows:
        s = r.summary
        table.add_row(
            f"{r.second}{'*' if r.fault else ''}",
            str(s.requests),
            str(s.answered),
            str(s.failed),
            f"{s.p50_ms:.1f}",
            f"{s.p99_ms:.1f}",
            str(s.by_pool.get("primary", 0)),
            str(s.by_pool.get("secondary", 0)),
            str(s.by_pool.get("stand-in", 0)),
        )
    return table


def _describe(seconds: int | None) -> str:
    return "not within the run" if seconds is None else f"{seconds} s"


async def run_failover(rate: float, seconds: float, workdir: Path, console: Console) -> list[SecondRow]:
    """Run the experiment and print its tables; return the per-second rows."""
    deadline_s = 2.0
    fault_start, fault_end = round(seconds * 0.25), round(seconds * 0.75)
    console.log(f"starting topology in {workdir}: 2 pools x 2 issuer hosts, 1 gateway")
    topo = Topology(workdir, TopologySpec())
    await asyncio.to_thread(topo.start)
    primary = [topo.sims[m] for m, pool in topo.pool_of.items() if pool == "primary"]
    try:
        mix = CardMix(cards=300)
        t0 = time.monotonic()
        load = asyncio.ensure_future(
            run_open_loop(
                topo.gateways[0].address,
                rate_per_s=rate,
                duration_s=seconds,
                make_request=mix.request,
                deadline_s=deadline_s,
            )
        )
        try:
            await asyncio.sleep(max(0.0, t0 + fault_start - time.monotonic()))
            console.log(f"fault: primary pool hung (SIGSTOP {', '.join(p.name for p in primary)})")
            for proc in primary:
                proc.signal(signal.SIGSTOP)
            await asyncio.sleep(max(0.0, t0 + fault_end - time.monotonic()))
            console.log("recovery: primary pool resumed (SIGCONT)")
        finally:
            for proc in primary:
                proc.signal(signal.SIGCONT)
        samples = await load
    finally:
        await asyncio.to_thread(topo.stop)
    rows = per_second_rows(samples, (fault_start, fault_end), deadline_s)
    console.print(_table(rows, rate))
    normal = normal_p99_ms(rows, fault_start)
    limit = max(2 * normal, normal + 5.0)
    total = summarize(samples, deadline_s)
    first = rows[fault_start].summary if fault_start < len(rows) else None
    console.print(
        f"normal p99 {normal:.1f} ms (back to normal: p99 <= {limit:.1f} ms and no failure, "
        f"{_STEADY_SECONDS} s in a row)\n"
        f"p99 in the first second of the fault: {first.p99_ms if first else 0.0:.1f} ms "
        f"(max {first.max_ms if first else 0.0:.1f} ms)\n"
        f"p99 back to normal after the fault began: "
        f"{_describe(seconds_to_normal(rows, fault_start, fault_end, limit))}\n"
        f"p99 back to normal after the primary pool came back: "
        f"{_describe(seconds_to_normal(rows, fault_end, len(rows), limit))}\n"
        f"traffic back on the primary pool after it came back: "
        f"{_describe(seconds_to_primary(rows, fault_end))}\n"
        f"whole run: {total.requests} requests, {total.failed} failed, p50 {total.p50_ms:.1f} ms, "
        f"p99 {total.p99_ms:.1f} ms, answered by {dict(sorted(total.by_pool.items()))}"
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench_failover", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rate", type=float, default=300.0, help="authorizations per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    console = Console(width=max(120, shutil.get_terminal_size().columns))
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-failover-"))
    try:
        asyncio.run(run_failover(args.rate, args.seconds, workdir, console))
    finally:
        if args.keep:
            console.print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
