"""The benchmark's failover comparison: what share of requests each target answers in an outage.

At a fixed rate, after a short warm-up, the primary issuer host hangs
(SIGSTOP: TCP still accepts, nothing answers), then the backup host hangs
too. A request counts as answered when it got a gRPC OK within the client
deadline: for authgw a stand-in answer or its 91 decline is a valid answer in
time; for the proxies a gRPC error or a timeout is a failure. Both hosts are
resumed (SIGCONT) once every request of the run has finished, and the next
target starts only when an issuer answers through it again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from chaos.bench_openloop import LoadPool, LoadSpec
from chaos.bench_rig import BenchRig, Target
from chaos.load import Sample
from chaos.report import Summary, summarize

__all__ = ["OutageResult", "OutageSchedule", "failure_kinds", "run_outage"]


@dataclass(frozen=True, slots=True)
class OutageSchedule:
    """Timing of one outage run (seconds)."""

    rate_per_s: float = 300.0
    warmup_s: float = 2.0  # normal traffic, not scored
    primary_hung_s: float = 10.0
    all_hung_s: float = 10.0
    deadline_s: float = 2.0

    @property
    def duration_s(self) -> float:
        return self.warmup_s + self.primary_hung_s + self.all_hung_s


@dataclass(frozen=True, slots=True)
class OutageResult:
    """Per-phase summaries of one target's outage run, and why requests failed in each phase."""

    target: str
    primary_hung: Summary
    all_hung: Summary
    primary_hung_failures: dict[str, int]  # gRPC status name (LATE: OK after the deadline) -> count
    all_hung_failures: dict[str, int]


def failure_kinds(samples: Sequence[Sample], deadline_s: float) -> dict[str, int]:
    """Failed requests by gRPC status; an OK that came after the deadline is LATE."""
    kinds = Counter(
        "LATE" if s.answered else s.status for s in samples if not (s.answered and s.latency_s <= deadline_s)
    )
    return dict(kinds.most_common())


async def _at(wall_clock: float) -> None:
    await asyncio.sleep(max(0.0, wall_clock - time.time()))


async def run_outage(rig: BenchRig, pool: LoadPool, target: Target, schedule: OutageSchedule) -> OutageResult:
    """Drive `target` through the outage and score each phase by the send time of its requests."""
    primary, backup = rig.sims
    await rig.wait_ready(target)
    spec = LoadSpec(
        target.address, target.method, schedule.rate_per_s, schedule.duration_s, schedule.deadline_s
    )
    run = await pool.launch(spec)
    start_at = run.start()
    load = asyncio.ensure_future(run.result())
    try:
        await _at(start_at + schedule.warmup_s)
        rig.hang(primary)
        await _at(start_at + schedule.warmup_s + schedule.primary_hung_s)
        rig.hang(backup)
        result = await load
    finally:
        if not load.done():
            await run.kill()
            await asyncio.wait((load,))
        rig.resume_all()
    first = schedule.warmup_s
    second = first + schedule.primary_hung_s
    phase1 = [s for s in result.samples if first <= s.sent_at < second]
    phase2 = [s for s in result.samples if second <= s.sent_at]
    deadline = schedule.deadline_s
    return OutageResult(
        target.name,
        summarize(phase1, deadline),
        summarize(phase2, deadline),
        failure_kinds(phase1, deadline),
        failure_kinds(phase2, deadline),
    )
