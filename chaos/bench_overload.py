"""The benchmark's overload run: open loop at a multiple of the gateway's saturation throughput.

Saturation throughput is authgw's closed-loop (h2load) answers per second in
the same bench run. The open loop then offers `factor` times that (2x by
default) for a while, once to a gateway with admission control
(gateway/admission.py; min_limit 32, chaos.bench_rig.TIGHT_ADMISSION) and
once to the bench's `authgw` (`[admission] enabled = false`), interleaved
over rounds. Scored per round:

- goodput: answers (gRPC OK) within the deadline, per second of the run;
- refused: RESOURCE_EXHAUSTED (admission control said no at once);
- failed: everything else (deadline exceeded, answers after the deadline);
- p50 / p99 of the admitted requests answered within the deadline.

The load generator is Python (chaos.bench_openloop), on the same two cores
as the gateway: at these rates it takes CPU the gateway would otherwise have,
which its lag behind the schedule shows.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chaos.bench_openloop import LoadPool, LoadSpec
from chaos.bench_rig import Target
from chaos.report import summarize

__all__ = ["OverloadRound", "OverloadSchedule", "overload_document", "overload_lines", "run_overload"]


@dataclass(frozen=True, slots=True)
class OverloadSchedule:
    """How hard and how long."""

    factor: float = 2.0  # offered rate = factor x saturation throughput
    duration_s: float = 10.0  # scored part
    warmup_s: float = 1.0  # unscored start (new connections)
    deadline_s: float = 2.0
    rounds: int = 3


@dataclass(frozen=True, slots=True)
class OverloadRound:
    """One target in one round."""

    target: str
    rate_per_s: float
    goodput_rps: float
    refused_share: float
    failed_share: float
    p50_ms: float
    p99_ms: float
    max_lag_ms: float

    def line(self, saturation_rps: float) -> str:
        return (
            f"overload {self.target:<18} @{self.rate_per_s:.0f}/s: goodput {self.goodput_rps:.0f}/s "
            f"({self.goodput_rps / saturation_rps:.0%} of saturation {saturation_rps:.0f}/s), refused "
            f"{self.refused_share:.1%}, failed {self.failed_share:.1%}, admitted p50/p99 "
            f"{self.p50_ms:.1f}/{self.p99_ms:.1f} ms, generator lag {self.max_lag_ms:.0f} ms"
        )


async def overload_round(pool: LoadPool, target: Target, rate: float, s: OverloadSchedule) -> OverloadRound:
    """One open-loop run of `target` at `rate`, scored after the warm-up."""
    spec = LoadSpec(target.address, target.method, rate, s.warmup_s + s.duration_s, s.deadline_s)
    result = await pool.run(spec)
    scored = [x for x in result.samples if x.sent_at >= s.warmup_s]
    summary = summarize(scored, s.deadline_s)
    refused = sum(1 for x in scored if x.status == "RESOURCE_EXHAUSTED")
    n = max(1, summary.requests)
    return OverloadRound(
        target.name,
        rate,
        summary.answered / s.duration_s,
        refused / n,
        (summary.failed - refused) / n,
        summary.p50_ms,
        summary.p99_ms,
        result.max_lag_s * 1000.0,
    )


async def run_overload(
    pool: LoadPool, targets: Sequence[Target], saturation_rps: float, s: OverloadSchedule
) -> list[OverloadRound]:
    """`s.rounds` rounds over `targets`, the order flipped every other round."""
    rate = s.factor * saturation_rps
    rounds: list[OverloadRound] = []
    for n in range(s.rounds):
        for target in targets if n % 2 == 0 else list(reversed(targets)):
            rounds.append(await overload_round(pool, target, rate, s))
    return rounds


def _median(rounds: Sequence[OverloadRound], field: str) -> tuple[float, float, float]:
    values = [float(getattr(r, field)) for r in rounds]
    return statistics.median(values), min(values), max(values)


def overload_document(rounds: Sequence[OverloadRound], saturation_rps: float) -> dict[str, Any]:
    """Per target: medians with min and max over rounds."""
    doc: dict[str, Any] = {"saturation_rps": round(saturation_rps, 1)}
    for name in dict.fromkeys(r.target for r in rounds):
        mine = [r for r in rounds if r.target == name]
        entry: dict[str, Any] = {"rate_per_s": round(mine[0].rate_per_s, 1), "rounds": len(mine)}
        for field in ("goodput_rps", "refused_share", "failed_share", "p50_ms", "p99_ms"):
            med, low, high = _median(mine, field)
            entry[field] = {"median": round(med, 4), "min": round(low, 4), "max": round(high, 4)}
        entry["goodput_over_saturation"] = round(entry["goodput_rps"]["median"] / saturation_rps, 3)
        doc[name] = entry
    return doc


def overload_lines(doc: dict[str, Any]) -> list[str]:
    """The overload document in a few printable lines (medians, [min-max])."""
    lines = []
    for name, e in doc.items():
        if not isinstance(e, dict):
            continue
        g, p99, r = e["goodput_rps"], e["p99_ms"], e["refused_share"]
        lines.append(
            f"overload {name} @{e['rate_per_s']:.0f}/s ({e['rounds']} rounds): goodput {g['median']:.0f}/s "
            f"[{g['min']:.0f}-{g['max']:.0f}] = {e['goodput_over_saturation']:.0%} of saturation "
            f"{doc['saturation_rps']:.0f}/s; admitted p99 {p99['median']:.0f} ms [{p99['min']:.0f}-"
            f"{p99['max']:.0f}]; refused {r['median']:.1%}; failed {e['failed_share']['median']:.1%}"
        )
    return lines
