"""`python -m chaos.run NAME [NAME ...] | all [--scale S]`: run chaos experiments, print a summary.

Each experiment writes chaos/reports/<name>.json, .md and .png. The exit status
is 0 only when every experiment passed all its criteria.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from chaos.experiment import REPORTS, run_experiment
from chaos.experiments import EXPERIMENTS, build
from chaos.experiments_cluster import redis_master_loss

__all__ = ["main", "summary"]

# The money figures of chaos.verify, each expected 0, under short column names.
_MONEY_COLUMNS = {
    "missing": "missing",
    "double_posted": "double",
    "declines_debited": "debited",
    "holds_not_released": "held",
    "reversals_not_applied": "unrev.",
    "amount_mismatches": "mismatch",
}


def summary(reports: list[dict[str, Any]]) -> Table:
    table = Table(title="chaos experiments", box=box.SIMPLE_HEAD)  # 14 columns: no room for rules
    table.caption = (
        "money figures (chaos.verify), each expected 0: "
        + ", ".join(f"{short} = {name}" for name, short in _MONEY_COLUMNS.items() if short != name)
        + "; n/s = settlement not done within the settle phase (no verdict on money)"
    )
    for col in ("experiment", "requests", "failed", "avail.", "p99 ms", "issuer/stand-in"):
        table.add_column(col, justify="left" if col == "experiment" else "right", no_wrap=True)
    for col in (*_MONEY_COLUMNS.values(), "result"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in reports:
        settled = r["settlement"].get("settled", True)
        money = [str(r["settlement"][name]) if settled else "n/s" for name in _MONEY_COLUMNS]
        table.add_row(
            r["experiment"],
            str(r["requests"]),
            str(r["failed"]),
            f"{r['availability']:.2%}",
            f"{r['latency_ms']['p99']:.0f}",
            f"{r['by_source']['issuer']}/{r['by_source']['stand_in']}",
            *money,
            "[green]passed[/green]" if r["passed"] else "[red]FAILED[/red]",
        )
    return table


async def _run_all(
    names: list[str],
    scale: float,
    console: Console,
    keep: bool,
    *,
    cards: int | None = None,
    traces: bool = False,
    redis_master: int | None = None,
) -> list[dict[str, Any]]:
    reports = []
    for name in names:
        workdir = Path(tempfile.mkdtemp(prefix=f"authgw-chaos-{name}-"))
        try:
            exp = build(name, scale)
            if name == "redis-master-loss" and redis_master is not None:
                exp = redis_master_loss(scale, redis_master)
            if cards is not None:
                exp = dataclasses.replace(exp, cards=cards)
            if traces:
                exp = dataclasses.replace(exp, traces=True)
            reports.append(await run_experiment(exp, workdir, console, REPORTS))
        finally:
            if keep:
                console.print(f"logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description="run chaos experiments")
    parser.add_argument("names", nargs="+", help=f"'all' or some of: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--scale", type=float, default=1.0, help="compress (<1) or stretch the timelines")
    parser.add_argument("--keep", action="store_true", help="keep each experiment's work directory (logs)")
    parser.add_argument(
        "--cards",
        type=int,
        default=None,
        help="cards the load draws from (e.g. 100000: a realistic population)",
    )
    parser.add_argument(
        "--traces",
        action="store_true",
        help="an OTLP receiver, tail sampling: is every stand-in decision traced? (always on: total-outage)",
    )
    parser.add_argument(
        "--redis-master",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="redis-master-loss: kill this master (by port rank) instead of the journal's busiest",
    )
    args = parser.parse_args(argv)
    names = list(EXPERIMENTS) if args.names == ["all"] else args.names
    for name in names:
        build(name)  # unknown names fail before anything starts
    console = Console(width=max(150, shutil.get_terminal_size().columns))  # the summary has 13 columns
    reports = asyncio.run(
        _run_all(
            names,
            args.scale,
            console,
            args.keep,
            cards=args.cards,
            traces=args.traces,
            redis_master=args.redis_master,
        )
    )
    console.print(summary(reports))
    return 0 if all(r["passed"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
