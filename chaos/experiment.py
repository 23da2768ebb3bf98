"""Running one chaos experiment: topology, steady load, faults on a timeline, verdict, report.

An experiment is data (`Experiment`: topology, rate, duration, phases, fault
script, the acquirers' behaviour, extra criteria); `run_experiment` does the
rest the same way for all: start the topology, drive open-loop load with a
live status line while the fault script runs, let settlement finish (the
acquirers keep delivering their reversals meanwhile), check every request's
book at the issuer against what its acquirer holds (`chaos.verify`: the six
money figures, each expected 0, each a criterion), judge the criteria, and
write `chaos/reports/<name>.json|.md|.png`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from authgw.v1 import authorization_pb2 as pb
from chaos.acquirer import Acquirer, AcquirerBehaviour
from chaos.acquirer_iso8583 import IsoGatewayStubs
from chaos.confusion import Confusion, confusion, confusion_table, from_dict, rules_dict
from chaos.load import CardMix
from chaos.otlp_receiver import OtlpReceiver
from chaos.report import Phase, live_line, per_second, plot_timeline, summarize
from chaos.samples import Sample
from chaos.topology import Topology, TopologySpec
from chaos.traces import TraceCount, count_traces, traced_spec
from chaos.verify import MoneyCheck, verify_settlement

__all__ = [
    "REPORTS",
    "SETTLED",
    "Criterion",
    "Experiment",
    "FaultScript",
    "Run",
    "money_criteria",
    "run_experiment",
]

REPORTS = Path(__file__).resolve().parent / "reports"
DEADLINE_S = 2.0
ACQUIRERS = ("1001", "1002")

# What each money figure means, as a criterion's name (chaos.verify defines them exactly).
_FIGURE_NAMES = {
    "missing": "approvals the issuer never booked (missing)",
    "double_posted": "requests posted more than once, or postings no request explains (double_posted)",
    "declines_debited": "declines or refusals the issuer holds money for (declines_debited)",
    "holds_not_released": "unanswered or stand-in-declined requests still held (holds_not_released)",
    "reversals_not_applied": "acknowledged reversals the issuer's book exceeds (reversals_not_applied)",
    "amount_mismatches": "other differences between acquirer and issuer (amount_mismatches)",
}


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    expected: str
    observed: str
    passed: bool
    timing: bool = False  # a latency bound: judged by `make chaos`, not asserted by the test suite


@dataclass
class Run:
    """What a fault script and the criteria see while an experiment runs."""

    topo: Topology
    console: Console
    t0: float = 0.0
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    fault_times: list[float] = field(default_factory=list)  # seconds from t0 when a fault began
    extra: dict[str, Any] = field(default_factory=dict)  # more figures for the report (its "extra")
    pan_of: dict[str, str] = field(default_factory=dict)  # "acquirer:request_id" -> PAN, after the load

    async def at(self, t: float) -> None:
        """Sleep until t seconds after the start of the load."""
        await asyncio.sleep(max(0.0, self.t0 + t - time.monotonic()))

    def fault(self, text: str) -> None:
        """Mark a fault starting now (the first second after it is exempt from 100 % availability)."""
        self.fault_times.append(time.monotonic() - self.t0)
        self.console.log(f"fault: {text}")

    def note(self, text: str) -> None:
        self.console.log(text)


FaultScript = Callable[[Run], Coroutine[Any, Any, None]]
ExtraCriteria = Callable[[Sequence[Sample], Run], list[Criterion]]


@dataclass(frozen=True)
class Experiment:
    name: str  # make target without the chaos- prefix
    title: str
    spec: TopologySpec
    duration_s: float
    phases: tuple[Phase, ...]
    script: FaultScript
    rate_per_s: float = 300.0
    more_criteria: ExtraCriteria | None = None
    settle_timeout_s: float = 60.0
    behaviour: AcquirerBehaviour = field(default_factory=AcquirerBehaviour)
    # False when the acquirers themselves cut requests short (deadlines of a few ms, cancels):
    # availability then measures the clients, not the gateway.
    judge_availability: bool = True
    # Cards the load draws from; ~100,000+ gives a realistic few transactions per card and day
    # (confusion.py): the default reuses a few hundred so often that per-card windows dominate.
    cards: int = 400
    # An OTLP receiver, tail sampling in every gateway, and the criterion "every stand-in decision
    # traced up to the bound" (chaos.traces).
    traces: bool = False
    # The requests, when not CardMix's: given the run (its t0, for a timeline of its own) and `cards`.
    requests: Callable[[Run, int], Callable[[], pb.AuthorizeRequest]] | None = None
    # Run first, on a topology of its own: its confusion matrix is this report's "before"
    # (e.g. the policy's limits only), and it must pass too.
    baseline: Experiment | None = None


def _availability_criteria(samples: Sequence[Sample], run: Run) -> list[Criterion]:
    s = summarize(samples, DEADLINE_S)
    exempt = [(t, t + 1.0) for t in run.fault_times]
    outside = [x for x in samples if not any(a <= x.sent_at < b for a, b in exempt)]
    s_out = summarize(outside, DEADLINE_S)
    return [
        Criterion("availability", ">= 99.9 %", f"{s.availability:.4%}", s.availability >= 0.999),
        Criterion(
            "availability outside 1 s after each fault",
            "100 %",
            f"{s_out.availability:.4%} ({s_out.failed} failed)",
            s_out.failed == 0,
        ),
        Criterion(
            "p99 latency",
            f"<= {DEADLINE_S * 1000:.0f} ms",
            f"{s.p99_ms:.1f} ms",
            s.p99_ms <= DEADLINE_S * 1000,
        ),
    ]


SETTLED = "settlement done within the settle phase (advised, reversals booked, journals empty)"


def money_criteria(check: MoneyCheck) -> list[Criterion]:
    """One criterion per money figure: expected 0, any other value fails the experiment.

    Before settlement is done the figures are no verdict: only the unfinished settlement is
    reported (and fails the experiment), never a money figure.
    """
    if not check.settled:
        return [Criterion(SETTLED, "done", "NOT SETTLED: " + "; ".join(check.unsettled), False)]
    figures = [
        Criterion(_FIGURE_NAMES[name], "0", str(value), value == 0) for name, value in check.figures().items()
    ]
    return [Criterion(SETTLED, "done", f"after {check.waited_s:.0f} s", True), *figures]


def _trace_criterion(traces: TraceCount) -> Criterion:
    return Criterion(
        "stand-in decisions traced (up to the keep bound; else counted dropped)",
        f"{traces.standin_decisions} (dropped {traces.dropped})",
        f"{traces.traced} traced; untraced e.g. {list(traces.untraced_examples)}",
        traces.passed and traces.standin_decisions > 0,
    )


def _report(
    exp: Experiment, run: Run, samples: Sequence[Sample], check: MoneyCheck, criteria: list[Criterion]
) -> dict[str, Any]:
    s = summarize(samples, DEADLINE_S)
    standin = [x for x in samples if x.answered and x.source == "STAND_IN"]
    return {
        "experiment": exp.name,
        "title": exp.title,
        "started_at": run.started.isoformat(),
        "duration_s": exp.duration_s,
        "rate_per_s": exp.rate_per_s,
        "requests": s.requests,
        "answered_in_deadline": s.answered,
        "failed": s.failed,
        "availability": s.availability,
        "latency_ms": {"p50": s.p50_ms, "p99": s.p99_ms, "max": s.max_ms},
        "by_source": {"issuer": s.by_source.get("ISSUER", 0), "stand_in": s.by_source.get("STAND_IN", 0)},
        "by_pool": s.by_pool,
        "standin": {
            "approved": sum(1 for x in standin if x.approved),
            "declined": sum(1 for x in standin if not x.approved),
            "approved_amount_minor": sum(x.amount_minor for x in standin if x.approved),
            "by_reason": dict(Counter(x.standin_reason for x in standin)),
            "first_s": round(min((x.sent_at for x in standin), default=0.0), 2),
            "last_s": round(max((x.sent_at for x in standin), default=0.0), 2),
        },
        "settlement": check.as_dict(),
        "faults_at_s": [round(t, 3) for t in run.fault_times],
        "per_second": per_second(samples, DEADLINE_S),
        "criteria": [_crit(c) for c in criteria],
        "extra": run.extra,
        "passed": all(c.passed for c in criteria),
    }


def _crit(c: Criterion) -> dict[str, Any]:
    return {
        "name": c.name,
        "expected": c.expected,
        "observed": c.observed,
        "passed": c.passed,
        "timing": c.timing,
    }


def _markdown(report: dict[str, Any], picture: Path) -> str:
    lines = [f"# chaos-{report['experiment']}: {report['title']}", ""]
    lines.append(f"Started {report['started_at']}, {report['duration_s']} s at {report['rate_per_s']}/s.")
    lines += ["", "| measure | value |", "|---|---|"]
    for key in ("requests", "answered_in_deadline", "failed", "availability"):
        lines.append(f"| {key} | {report[key]} |")
    lat = report["latency_ms"]
    lines.append(f"| latency p50 / p99 / max (ms) | {lat['p50']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f} |")
    src, st = report["by_source"], report["standin"]
    lines.append(f"| answered by issuer / stand-in | {src['issuer']} / {src['stand_in']} |")
    approved = f"{st['approved']} / {st['declined']} ({st['approved_amount_minor']} minor units approved)"
    lines.append(f"| stand-in approved / declined | {approved} |")
    for key, when in (("confusion_before", "before "), ("confusion", "")):
        for cell, value in (st.get(key) or {}).items():
            figures = f"{value['count']} / {value['amount_minor']}"
            lines.append(f"| {when}stand-in vs issuer: {cell} (count / minor units) | {figures} |")
    for key, when in (("false_declines_by_rule_before", "before "), ("false_declines_by_rule", "")):
        if st.get(key):
            ranked = ", ".join(f"{rule} {v['count']} / {v['amount_minor']}" for rule, v in st[key].items())
            lines.append(f"| {when}false declines by rule (count / minor units) | {ranked} |")
    for key, value in report.get("extra", {}).items():
        lines.append(f"| {key} | {value} |")
    for key, value in report["settlement"].items():
        if key != "examples":
            lines.append(f"| settlement {key} | {value} |")
    lines += ["", "| criterion | expected | observed | passed |", "|---|---|---|---|"]
    for c in report["criteria"]:
        lines.append(
            f"| {c['name']} | {c['expected']} | {c['observed']} | {'yes' if c['passed'] else 'NO'} |"
        )
    examples = report["settlement"].get("examples") or {}
    if examples:
        lines += ["", "Requests behind failing money figures (acquirer/request_id#digest):", ""]
        lines += [f"- {figure}: {', '.join(keys)}" for figure, keys in examples.items()]
    lines += ["", f"**{'PASSED' if report['passed'] else 'FAILED'}**", "", f"![timeline]({picture.name})", ""]
    return "\n".join(lines)


def _write_reports(reports: Path, exp: Experiment, report: dict[str, Any], samples: Sequence[Sample]) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    picture = plot_timeline(
        reports / f"{exp.name}.png", f"chaos-{exp.name}: {exp.title}", samples, exp.phases
    )
    (reports / f"{exp.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (reports / f"{exp.name}.md").write_text(_markdown(report, picture))


async def _drive(exp: Experiment, run: Run, console: Console) -> tuple[list[Sample], MoneyCheck, Confusion]:
    """The load and the fault script together, then the settle phase (reversals still delivered)."""
    make_request = (
        exp.requests(run, exp.cards)
        if exp.requests is not None
        else CardMix(cards=exp.cards, acquirer_ids=ACQUIRERS).request
    )
    targets = [g.address for g in run.topo.gateways]
    credentials = run.topo.acquirer_credentials
    stubs = None
    if run.topo.spec.iso8583_acquirers:  # the same acquirers, over the gateways' ISO 8583 listeners
        tls = run.topo.acquirer_ssl if run.topo.pki is not None else None
        stubs = IsoGatewayStubs(run.topo.iso8583_targets, tls)
    async with Acquirer(
        targets, exp.behaviour, deadline_s=DEADLINE_S, credentials=credentials, stubs=stubs
    ) as acquirer:
        run.t0 = time.monotonic()
        with Live(console=console, refresh_per_second=4, transient=True) as live:

            def tick(elapsed: float, samples: list[Sample]) -> None:
                phase = next((p.name for p in exp.phases if p.start_s <= elapsed < p.end_s), "")
                live.update(live_line(elapsed, phase, samples))

            load = asyncio.create_task(acquirer.run(exp.rate_per_s, exp.duration_s, make_request, tick))
            script = asyncio.ensure_future(exp.script(run))
            samples = await load
            await script
        check = await verify_settlement(run.topo, samples, exp.settle_timeout_s, console)
        matrix = confusion(samples, acquirer.pan_of)
        run.pan_of = acquirer.pan_of
    if matrix.decided:
        console.print(
            confusion_table(matrix, f"chaos-{exp.name}: stand-in vs issuer (shadow), count / minor units")
        )
    return samples, check, matrix


async def run_experiment(
    exp: Experiment, workdir: Path, console: Console, reports: Path = REPORTS
) -> dict[str, Any]:
    """Run one experiment end to end; returns its report (also written to reports/)."""
    before = None
    if exp.baseline is not None:
        before = await run_experiment(exp.baseline, workdir / "baseline", console, reports)
    console.rule(f"chaos-{exp.name}: {exp.title}")
    if not exp.traces:
        return await _run_started(exp, Topology(workdir, exp.spec), None, console, reports, before)
    async with OtlpReceiver() as receiver:
        topo = Topology(workdir, traced_spec(exp.spec, receiver.endpoint))
        return await _run_started(exp, topo, receiver, console, reports, before)


async def _run_started(  # noqa: PLR0917 - the run's parts, each needed once
    exp: Experiment,
    topo: Topology,
    receiver: OtlpReceiver | None,
    console: Console,
    reports: Path,
    before: dict[str, Any] | None,
) -> dict[str, Any]:
    await asyncio.to_thread(topo.start)
    run = Run(topo, console)
    try:
        await asyncio.sleep(1.0)  # agents register, gateways connect
        samples, check, matrix = await _drive(exp, run, console)
        criteria = money_criteria(check)
        traces = None if receiver is None else await count_traces(topo, receiver, samples)
        if traces is not None:
            criteria.append(_trace_criterion(traces))
        if exp.judge_availability:
            criteria = _availability_criteria(samples, run) + criteria
        if exp.more_criteria is not None:
            criteria += exp.more_criteria(samples, run)
        if before is not None:
            name = f"the baseline run (chaos-{before['experiment']}) passed"
            criteria.append(Criterion(name, "yes", "yes" if before["passed"] else "no", before["passed"]))
        report = _report(exp, run, samples, check, criteria)
        if matrix.decided:
            report["standin"]["confusion"] = matrix.as_dict()
            report["standin"]["false_declines_by_rule"] = rules_dict(matrix)
        if before is not None and before["standin"].get("confusion"):
            report["standin"]["confusion_before"] = before["standin"]["confusion"]
            earlier_rules = before["standin"].get("false_declines_by_rule", {})
            report["standin"]["false_declines_by_rule_before"] = earlier_rules
            earlier = from_dict(before["standin"]["confusion"])
            console.print(confusion_table(earlier, "before: " + before["title"]))
            console.print(confusion_table(matrix, f"after: {exp.title}"))
        report["cards"] = exp.cards
        if traces is not None:
            report["traces"] = traces.as_dict()
    finally:
        await asyncio.to_thread(topo.stop)
    await asyncio.to_thread(_write_reports, reports, exp, report, samples)
    verdict = "[green]PASSED[/green]" if report["passed"] else "[red]FAILED[/red]"
    console.print(f"chaos-{exp.name}: {verdict}  report: {reports / (exp.name + '.json')}")
    for c in criteria:
        if not c.passed:
            console.print(f"  [red]x[/red] {c.name}: expected {c.expected}, observed {c.observed}")
    return report
