"""`make bench`: authgw against the Python floor and two proxies, in front of the same issuer hosts.

Targets (chaos.bench_rig): direct to the primary issuer host (no hop), the
Python floor (chaos.bench_floor: request bytes to the primary, the backup on
error, nothing else), the authgw gateway (pools primary + secondary), nginx
`grpc_pass` and HAProxy h2, both with a backup server. For each run, targets
in turn (A B C D E, A B C D E, ...):

- throughput: h2load, closed loop (-c 8 -m 32 by default), one gRPC-framed
  AuthorizeRequest; CPU of the target's own processes per 1,000 requests over
  the same window (0 for direct);
- latency: open loop at fixed rates (500, 1,000, 2,000/s by default), p50/p99
  of requests answered within the deadline, over worker processes.

Reported numbers are medians over the runs. Then authgw's CPU per answer as a
ratio to the floor's (chaos.bench_ratio: interleaved h2load rounds, median
and spread). Then the overload run (chaos.bench_overload: open loop at 2x
authgw's h2load throughput, with and without admission control: goodput
within the deadline, refusals, admitted p99). Then, once per target, the failover comparison
(chaos.bench_outage). Results: a table on stdout and bench/results.json.
Benchmarks print numbers; they never assert timings.

    python -m chaos.bench [--runs 3] [--rates 500,1000,2000] [--quick] [--output PATH] [--keep]

Where the gateway's own CPU goes: `python -m chaos.bench_profile` (py-spy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from chaos.bench_h2load import bench_request, grpc_frame, run_h2load
from chaos.bench_openloop import LoadPool, LoadSpec
from chaos.bench_outage import OutageResult, OutageSchedule, run_outage
from chaos.bench_overload import OverloadSchedule, overload_document, overload_lines, run_overload
from chaos.bench_ratio import CpuRatio, measure_ratio
from chaos.bench_rig import ADMISSION, TARGETS, BenchRig, Target
from chaos.bench_tables import LatencyPoint, RunRecord, Throughput, results_table, runs_table
from chaos.report import summarize

__all__ = ["BenchOptions", "describe_machine", "main", "measure_throughput", "results_document"]

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results.json"


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to run and for how long."""

    runs: int = 3
    rates: tuple[int, ...] = (500, 1000, 2000)
    h2load_s: float = 10.0
    clients: int = 8
    streams: int = 32
    latency_s: float = 10.0  # open-loop duration per rate, after latency_warmup_s
    latency_warmup_s: float = 1.0  # first requests of each open loop (new connection) are not scored
    deadline_s: float = 2.0
    outage: OutageSchedule = field(default_factory=OutageSchedule)
    overload: OverloadSchedule = field(default_factory=OverloadSchedule)
    rate_per_process: float = 1000.0
    gateway_workers: int = 1  # authgw serve --workers
    cpu_rounds: int = 5  # interleaved floor/authgw h2load rounds for the CPU ratio
    cpu_h2load_s: float = 5.0  # h2load duration of each target in each ratio round
    output: Path = RESULTS


def describe_machine() -> str:
    """CPU model, cores, Python and kernel, in one line."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return f"{model}, {cores} cores, Python {platform.python_version()}, Linux {platform.release()}"


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def measure_throughput(rig: BenchRig, target: Target, body: Path, opts: BenchOptions) -> Throughput:
    """h2load's successful answers per second, with the target's CPU and the issuer calls per answer."""
    calls0, cpu0 = await rig.backend_calls(), target.cpu_s()
    result = await run_h2load(
        target.url, body, clients=opts.clients, streams=opts.streams, duration_s=opts.h2load_s, warmup_s=0
    )
    cpu1, calls1 = target.cpu_s(), await rig.backend_calls()
    answers = max(1, result.succeeded)
    return Throughput(
        result.rps, result.failed_share, (cpu1 - cpu0) / answers * 1000.0, (calls1 - calls0) / answers
    )


async def _latency(pool: LoadPool, target: Target, rate: int, opts: BenchOptions) -> LatencyPoint:
    spec = LoadSpec(
        target.address, target.method, rate, opts.latency_warmup_s + opts.latency_s, opts.deadline_s
    )
    result = await pool.run(spec)
    scored = [s for s in result.samples if s.sent_at >= opts.latency_warmup_s]
    summary = summarize(scored, opts.deadline_s)
    failed = summary.failed / summary.requests if summary.requests else 0.0
    return LatencyPoint(summary.p50_ms, summary.p99_ms, failed, result.max_lag_s * 1000.0)


def results_document(
    machine: str,
    runs: int,
    records: Sequence[RunRecord],
    outages: dict[str, OutageResult],
    ratio: CpuRatio | None = None,
) -> dict[str, Any]:
    """bench/results.json: medians over runs per target, each target's outage shares, the floor ratio."""
    targets: dict[str, Any] = {}
    for name in TARGETS:
        mine = [r for r in records if r.target == name]
        rates = sorted({rate for r in mine for rate in r.latency})
        outage = outages.get(name)
        targets[name] = {
            "rps": round(statistics.median(r.throughput.rps for r in mine), 1) if mine else 0.0,
            "latency_ms": {
                str(rate): {
                    "p50": round(statistics.median(r.latency[rate].p50_ms for r in mine), 2),
                    "p99": round(statistics.median(r.latency[rate].p99_ms for r in mine), 2),
                }
                for rate in rates
            },
            "cpu_s_per_1k": round(statistics.median(r.throughput.cpu_s_per_1k for r in mine), 4)
            if mine
            else 0.0,
            "failover": {
                "primary_hung": round(outage.primary_hung.availability, 4) if outage else 0.0,
                "all_hung": round(outage.all_hung.availability, 4) if outage else 0.0,
            },
        }
    doc: dict[str, Any] = {"machine": machine, "runs": runs, "targets": targets}
    if ratio is not None:
        doc["authgw_cpu_over_floor"] = ratio.document()
    return doc


async def run_bench(opts: BenchOptions, workdir: Path, console: Console) -> dict[str, Any]:
    """Start the rig, measure every target, run the outages; return the results document."""
    machine = describe_machine()
    console.rule(f"authgw bench: {machine}; authgw serve --workers {opts.gateway_workers}")
    console.log(
        f"load average at start: {_loadavg()} (a busy machine shows in p99 and in the generator's lag)"
    )
    body = workdir / "authorize.grpc"
    body.write_bytes(grpc_frame(bench_request().SerializeToString()))
    rig = BenchRig(workdir / "rig", gateway_workers=opts.gateway_workers, admission=opts.overload.rounds > 0)
    pool = LoadPool(workers=2, rate_per_process=opts.rate_per_process)
    try:
        await asyncio.to_thread(rig.start)  # blocking port waits: off the loop
        for target in rig.targets.values():
            await rig.wait_ready(target)
        records: list[RunRecord] = []
        for run in range(1, opts.runs + 1):
            for name in TARGETS:
                target = rig.targets[name]
                throughput = await measure_throughput(rig, target, body, opts)
                latency = {rate: await _latency(pool, target, rate, opts) for rate in opts.rates}
                record = RunRecord(name, run, throughput, latency)
                records.append(record)
                console.log(record.line())
        ratio_opts = replace(opts, h2load_s=opts.cpu_h2load_s)
        ratio = await measure_ratio(
            rig.targets["floor"],
            rig.targets["authgw"],
            opts.cpu_rounds,
            lambda target: measure_throughput(rig, target, body, ratio_opts),
        )
        console.log(ratio.line())
        overload = await _overload(rig, pool, records, opts, console)
        outages: dict[str, OutageResult] = {}
        for name in TARGETS:
            outages[name] = await run_outage(rig, pool, rig.targets[name], opts.outage)
            o = outages[name]
            console.log(
                f"outage {name}: primary hung {o.primary_hung.availability:.1%} answered "
                f"(failed: {o.primary_hung_failures or 'none'}), all hung {o.all_hung.availability:.1%} "
                f"(failed: {o.all_hung_failures or 'none'})"
            )
    finally:
        await asyncio.to_thread(rig.stop)
    console.log(f"load average at end: {_loadavg()}")
    console.print(runs_table(records, opts.rates))
    doc = results_document(machine, opts.runs, records, outages, ratio)
    console.print(results_table(doc, opts.rates, outages, opts.outage))
    console.print(ratio.line())
    if overload:
        doc["overload"] = overload
        for line in overload_lines(overload):
            console.print(line)
    return doc


async def _overload(
    rig: BenchRig, pool: LoadPool, records: Sequence[RunRecord], opts: BenchOptions, console: Console
) -> dict[str, Any]:
    """The overload rounds at opts.overload.factor x authgw's median h2load throughput; {} when off."""
    if opts.overload.rounds <= 0:
        return {}
    saturation = statistics.median(r.throughput.rps for r in records if r.target == "authgw")
    targets = [rig.targets[ADMISSION], rig.targets["authgw"]]
    for target in targets:
        await rig.wait_ready(target)
    rounds = await run_overload(pool, targets, saturation, opts.overload)
    for r in rounds:
        console.log(r.line(saturation))
    return overload_document(rounds, saturation)


def _rates(text: str) -> tuple[int, ...]:
    try:
        rates = tuple(int(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates: integers separated by commas, got {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def parse_options(argv: Sequence[str] | None) -> tuple[BenchOptions, bool]:
    p = argparse.ArgumentParser(prog="python -m chaos.bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs per target (medians are reported)")
    p.add_argument("--rates", type=_rates, default=(500, 1000, 2000), help="open-loop rates per second")
    p.add_argument("--quick", action="store_true", help="one short run: 3 s loads, 4 s outage phases")
    p.add_argument("--h2load-seconds", type=float, help="h2load duration (default 10)")
    p.add_argument("--latency-seconds", type=float, help="open-loop duration per rate (default 10)")
    p.add_argument("--warmup-seconds", type=float, help="unscored start of each open loop (default 1)")
    p.add_argument("--fault-seconds", type=float, help="length of each outage phase (default 10)")
    p.add_argument("--failover-rate", type=float, default=300.0, help="open-loop rate of the outage runs")
    p.add_argument("--deadline", type=float, default=2.0, help="client deadline in seconds")
    p.add_argument("--clients", type=int, default=8, help="h2load connections")
    p.add_argument("--streams", type=int, default=32, help="h2load concurrent streams per connection")
    p.add_argument("--cpu-rounds", type=int, default=5, help="interleaved rounds of the floor ratio")
    p.add_argument("--cpu-seconds", type=float, help="h2load duration per target per ratio round (default 5)")
    p.add_argument("--overload-rounds", type=int, default=3, help="overload rounds (0: no overload run)")
    p.add_argument("--overload-factor", type=float, default=2.0, help="offered rate / saturation")
    p.add_argument("--overload-seconds", type=float, help="scored open loop per overload round (default 10)")
    p.add_argument("--gateway-workers", type=int, default=1, help="authgw serve --workers N")
    p.add_argument("--output", type=Path, default=RESULTS, help="results JSON path")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs and logs)")
    a = p.parse_args(argv)
    if a.cpu_rounds < 1:
        p.error("--cpu-rounds must be at least 1")
    quick = a.quick
    opts = BenchOptions(
        runs=1 if quick and a.runs == 3 else a.runs,
        rates=a.rates,
        h2load_s=a.h2load_seconds or (3.0 if quick else 10.0),
        clients=a.clients,
        streams=a.streams,
        latency_s=a.latency_seconds or (3.0 if quick else 10.0),
        latency_warmup_s=a.warmup_seconds if a.warmup_seconds is not None else 1.0,
        deadline_s=a.deadline,
        gateway_workers=a.gateway_workers,
        cpu_rounds=a.cpu_rounds,
        cpu_h2load_s=a.cpu_seconds or (2.0 if quick else 5.0),
        output=a.output,
    )
    fault_s = a.fault_seconds or (4.0 if quick else 10.0)
    outage = OutageSchedule(
        rate_per_s=a.failover_rate,
        warmup_s=min(2.0, fault_s / 2),
        primary_hung_s=fault_s,
        all_hung_s=fault_s,
        deadline_s=a.deadline,
    )
    overload = OverloadSchedule(
        factor=a.overload_factor,
        duration_s=a.overload_seconds or (3.0 if quick else 10.0),
        warmup_s=opts.latency_warmup_s,
        deadline_s=a.deadline,
        rounds=1 if quick and a.overload_rounds == 3 else a.overload_rounds,
    )
    return replace(opts, outage=outage, overload=overload), a.keep


def main(argv: Sequence[str] | None = None) -> int:
    opts, keep = parse_options(argv)
    console = Console(width=max(140, shutil.get_terminal_size().columns))
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-"))
    started = time.monotonic()
    try:
        doc = asyncio.run(run_bench(opts, workdir, console))
    finally:
        if keep:
            console.print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"results: {opts.output} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
