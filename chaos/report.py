"""Summaries of a load run: percentiles (HdrHistogram), per-second timelines, tables, pictures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram
from rich.table import Table

from chaos.samples import Sample

__all__ = ["Phase", "Summary", "live_line", "per_second", "plot_timeline", "summarize", "summary_table"]

_US_MAX = 60_000_000  # one minute in microseconds: more than any deadline


@dataclass(frozen=True, slots=True)
class Phase:
    """A named interval of a run (seconds from its start); faults shade the timeline."""

    name: str
    start_s: float
    end_s: float
    fault: bool = False


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    answered: int
    failed: int
    approved: int
    declined: int
    by_source: dict[str, int]
    by_pool: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def availability(self) -> float:
        return self.answered / self.requests if self.requests else 1.0


def _histogram(samples: Sequence[Sample]) -> HdrHistogram:
    h = HdrHistogram(1, _US_MAX, 3)
    for s in samples:
        if s.answered:
            h.record_value(max(1, min(int(s.latency_s * 1e6), _US_MAX)))
    return h


def summarize(samples: Sequence[Sample], deadline_s: float = 2.0) -> Summary:
    """Counts and latency percentiles; an answer after deadline_s counts as failed.

    Requests whose refusal is expected (a request_id reused on purpose) or whose client gave up
    on purpose (cancelled) are left out: they say nothing of availability.
    """
    samples = [s for s in samples if s.judged]
    answered = [s for s in samples if s.answered and s.latency_s <= deadline_s]
    h = _histogram(answered)
    by_source = Counter(s.source for s in answered)
    by_pool = Counter(s.pool or "stand-in" for s in answered)
    return Summary(
        requests=len(samples),
        answered=len(answered),
        failed=len(samples) - len(answered),
        approved=sum(1 for s in answered if s.approved),
        declined=sum(1 for s in answered if not s.approved),
        by_source=dict(by_source),
        by_pool=dict(by_pool),
        p50_ms=h.get_value_at_percentile(50) / 1000 if answered else 0.0,
        p99_ms=h.get_value_at_percentile(99) / 1000 if answered else 0.0,
        max_ms=h.get_max_value() / 1000 if answered else 0.0,
    )


def summary_table(title: str, rows: Sequence[tuple[str, Summary]]) -> Table:
    """One row per run or phase."""
    table = Table(title=title)
    for col in (
        "phase",
        "requests",
        "failed",
        "approved",
        "declined",
        "issuer",
        "stand-in",
        "pools",
        "p50 ms",
    ):
        table.add_column(col, justify="left" if col in ("phase", "pools") else "right")
    table.add_column("p99 ms", justify="right")
    for name, s in rows:
        pools = ", ".join(f"{k}:{v}" for k, v in sorted(s.by_pool.items()))
        table.add_row(
            name,
            str(s.requests),
            str(s.failed),
            str(s.approved),
            str(s.declined),
            str(s.by_source.get("ISSUER", 0)),
            str(s.by_source.get("STAND_IN", 0)),
            pools,
            f"{s.p50_ms:.1f}",
            f"{s.p99_ms:.1f}",
        )
    return table


def live_line(elapsed_s: float, phase: str, samples: Sequence[Sample]) -> str:
    """One status line: elapsed, phase, rate, answered, failed, current source."""
    recent = [s for s in samples if s.sent_at >= elapsed_s - 1.0 and s.latency_s >= 0]
    answered = sum(1 for s in samples if s.answered and s.latency_s >= 0)
    failed = sum(1 for s in samples if s.status != "OK")
    sources = Counter(s.pool or "stand-in" for s in recent if s.answered)
    current = sources.most_common(1)[0][0] if sources else "-"
    return (
        f"{elapsed_s:5.1f}s  {phase:<22} sent {len(samples):>6}  answered {answered:>6}  "
        f"failed {failed:>4}  now answering: {current}"
    )


def per_second(samples: Sequence[Sample], deadline_s: float = 2.0) -> list[dict[str, float]]:
    """Answers per second by pool / stand-in, failures, and p99 of the requests sent in that second."""
    if not samples:
        return []
    seconds = int(max(s.sent_at for s in samples)) + 1
    rows: list[dict[str, float]] = []
    for sec in range(seconds):
        bucket = [s for s in samples if sec <= s.sent_at < sec + 1]
        ok = [s for s in bucket if s.answered and s.latency_s <= deadline_s]
        row: dict[str, float] = {"second": float(sec), "failed": float(len(bucket) - len(ok))}
        for s in ok:
            key = s.pool or "stand-in"
            row[key] = row.get(key, 0.0) + 1
        row["p99_ms"] = _histogram(ok).get_value_at_percentile(99) / 1000 if ok else 0.0
        rows.append(row)
    return rows


def plot_timeline(path: Path, title: str, samples: Sequence[Sample], phases: Sequence[Phase]) -> Path:
    """Stacked answers per second by source, failures, p99 latency, fault windows shaded."""
    import matplotlib  # noqa: PLC0415 (heavy; only experiments and the demo draw)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = per_second(samples)
    xs = [r["second"] for r in rows]
    sources = sorted({k for r in rows for k in r if k not in ("second", "failed", "p99_ms")})
    fig, ax = plt.subplots(figsize=(11, 4.5))
    bottom = [0.0] * len(rows)
    colors = {"primary": "#2b8cbe", "secondary": "#7bccc4", "stand-in": "#fdae61"}
    for src in sources:
        ys = [r.get(src, 0.0) for r in rows]
        ax.bar(xs, ys, bottom=bottom, width=0.9, label=src, color=colors.get(src), align="edge")
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    fails = [r["failed"] for r in rows]
    ax.bar(xs, fails, bottom=bottom, width=0.9, label="failed", color="#d7191c", align="edge")
    for ph in phases:
        if ph.fault:
            ax.axvspan(ph.start_s, ph.end_s, color="grey", alpha=0.15)
        ax.text(ph.start_s + 0.1, ax.get_ylim()[1] * 0.97, ph.name, fontsize=8, va="top")
    ax.set_xlabel("seconds")
    ax.set_ylabel("answers per second")
    ax2 = ax.twinx()
    ax2.plot(
        [x + 0.45 for x in xs], [r["p99_ms"] for r in rows], color="black", linewidth=1.2, label="p99 ms"
    )
    ax2.set_ylabel("p99 latency (ms)")
    ax.legend(loc="lower left", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
