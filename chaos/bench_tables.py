"""What the benchmark measured, per run, and its rich tables."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from chaos.bench_outage import OutageResult, OutageSchedule

__all__ = ["LatencyPoint", "RunRecord", "Throughput", "results_table", "runs_table", "spread"]


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    """One open-loop run at one rate."""

    p50_ms: float
    p99_ms: float
    failed_share: float  # errors and answers after the deadline
    max_lag_ms: float  # worst lateness of the generator behind its schedule


@dataclass(frozen=True, slots=True)
class Throughput:
    """One h2load run."""

    rps: float  # successful answers per second
    failed_share: float  # HTTP 5xx, resets, timeouts among h2load's requests
    cpu_s_per_1k: float  # the target's own CPU seconds per 1,000 successful answers
    calls_per_answer: float  # issuer Authorize calls per answer (retries, or answers without a host)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One target in one run."""

    target: str
    run: int
    throughput: Throughput
    latency: Mapping[int, LatencyPoint]

    def line(self) -> str:
        points = "  ".join(
            f"@{rate}/s {p.p50_ms:.1f}/{p.p99_ms:.1f} ms"
            + (f" fail {p.failed_share:.1%}" if p.failed_share else "")
            for rate, p in self.latency.items()
        )
        t = self.throughput
        failed = f" ({t.failed_share:.1%} failed)" if t.failed_share else ""
        return (
            f"run {self.run} {self.target:<8} {t.rps:6.0f} ok/s{failed}  cpu {t.cpu_s_per_1k:.3f} s/1k  "
            f"calls/answer {t.calls_per_answer:.2f}  p50/p99 {points}"
        )


def runs_table(records: Sequence[RunRecord], rates: Sequence[int]) -> Table:
    """Every run of every target, in the order they ran."""
    table = Table(title="bench: every run (p50 / p99 ms of the open loop, failed share)")
    for col in ("run", "target", "h2load ok/s", "h2load failed", "issuer calls/answer", "cpu s/1k req"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for rate in rates:
        table.add_column(f"@{rate}/s", justify="right")
    table.add_column("max gen lag ms", justify="right")
    for r in records:
        t = r.throughput
        cells = [str(r.run), r.target, f"{t.rps:.0f}", f"{t.failed_share:.1%}"]
        cells += [f"{t.calls_per_answer:.2f}", f"{t.cpu_s_per_1k:.3f}"]
        for rate in rates:
            p = r.latency[rate]
            cells.append(f"{p.p50_ms:.1f} / {p.p99_ms:.1f} ({p.failed_share:.1%})")
        cells.append(f"{max((p.max_lag_ms for p in r.latency.values()), default=0.0):.0f}")
        table.add_row(*cells)
    return table


def results_table(
    doc: Mapping[str, Any], rates: Sequence[int], outages: Mapping[str, OutageResult], outage: OutageSchedule
) -> Table:
    """The results document as a table, with the outage runs' latencies."""
    table = Table(
        title=f"bench: medians of {doc['runs']} run(s) - {doc['machine']}",
        caption=(
            f"h2load ok/s = successful answers per second (failures excluded); p50 / p99 ms of the open "
            f"loop per rate; cpu = the target's own processes per 1,000 answers under h2load; "
            f"answered = gRPC OK within {outage.deadline_s:g} s at {outage.rate_per_s:g}/s "
            f"(authgw: stand-in / 91 declines count), primary hung {outage.primary_hung_s:g} s, "
            f"then every host hung {outage.all_hung_s:g} s"
        ),
    )
    table.add_column("target")
    table.add_column("h2load ok/s", justify="right")
    for rate in rates:
        table.add_column(f"@{rate}/s ms", justify="right")
    for col in ("cpu s/1k req", "answered, primary hung", "answered, all hung", "p99 ms primary hung"):
        table.add_column(col, justify="right")
    for name, t in doc["targets"].items():
        cells = [name, f"{t['rps']:.0f}"]
        for rate in rates:
            point = t["latency_ms"].get(str(rate))
            cells.append(f"{point['p50']:.1f} / {point['p99']:.1f}" if point else "-")
        o = outages.get(name)
        cells += [
            f"{t['cpu_s_per_1k']:.3f}",
            f"{t['failover']['primary_hung']:.1%}",
            f"{t['failover']['all_hung']:.1%}",
            f"{o.primary_hung.p99_ms:.0f}" if o and o.primary_hung.answered else "-",
        ]
        table.add_row(*cells)
    return table


def spread(values: Sequence[float], digits: int = 1) -> dict[str, Any]:
    """Median, min, max (and every value) of one figure over the rounds."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "values": [round(v, digits) for v in values],
    }


def spread_text(values: Sequence[float], fmt: str = ".2f") -> str:
    """`median [min-max]` of one figure over the rounds, for a table cell."""
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"
