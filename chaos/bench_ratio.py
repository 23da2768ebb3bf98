"""authgw's CPU per answer over the Python floor's, from interleaved h2load rounds.

The machine is shared and noisy, so one pair of numbers proves little: each
round measures both targets back to back under the same h2load load (the
order flips every round, so a drift in the machine's load does not always
favour the same one), the ratio is taken within the round, and the report is
the median of the rounds' ratios with their spread (min and max).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.bench_rig import Target
from chaos.bench_tables import Throughput

__all__ = ["CpuRatio", "RatioRound", "measure_ratio"]

Measure = Callable[[Target], Awaitable[Throughput]]


@dataclass(frozen=True, slots=True)
class RatioRound:
    """One round: each target's CPU microseconds per successful answer."""

    floor_us: float
    authgw_us: float

    @property
    def ratio(self) -> float:
        return self.authgw_us / self.floor_us if self.floor_us > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class CpuRatio:
    """Every round, and the median ratio with its spread."""

    rounds: Sequence[RatioRound]

    @property
    def median(self) -> float:
        return statistics.median(r.ratio for r in self.rounds)

    @property
    def spread(self) -> tuple[float, float]:
        ratios = [r.ratio for r in self.rounds]
        return min(ratios), max(ratios)

    def line(self) -> str:
        low, high = self.spread
        floor = statistics.median(r.floor_us for r in self.rounds)
        authgw = statistics.median(r.authgw_us for r in self.rounds)
        return (
            f"authgw CPU per answer / floor's: {self.median:.2f}x (min {low:.2f}, max {high:.2f}; "
            f"{len(self.rounds)} interleaved rounds; medians: authgw {authgw:.0f} us, floor {floor:.0f} us)"
        )

    def document(self) -> dict[str, Any]:
        low, high = self.spread
        return {
            "median": round(self.median, 3),
            "min": round(low, 3),
            "max": round(high, 3),
            "rounds": [
                {"floor_cpu_us": round(r.floor_us, 1), "authgw_cpu_us": round(r.authgw_us, 1)}
                for r in self.rounds
            ],
        }


async def measure_ratio(floor: Target, authgw: Target, rounds: int, measure: Measure) -> CpuRatio:
    """`rounds` rounds of (floor, authgw), the order flipped every other round."""
    done: list[RatioRound] = []
    for n in range(rounds):
        order = (floor, authgw) if n % 2 == 0 else (authgw, floor)
        cpu = {t.name: (await measure(t)).cpu_s_per_1k * 1000.0 for t in order}  # s/1k -> us/answer
        done.append(RatioRound(cpu[floor.name], cpu[authgw.name]))
    return CpuRatio(done)
