"""One frame of `authgw top` as rich renderables: the fleet, its pools, answers, stand-in, journal.

Words rather than colours carry the state (a screen read by a terminal multiplexer, or a frame
printed by --once into a log, must say it too): "mode issuer", "STAND-IN", "ejected".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gateway.top.model import GatewayView
from gateway.top.sources import EtcdView, JournalView

__all__ = ["Frame", "render"]

_MODE_STYLE = {"issuer": "green", "stand-in": "bold red", "forced-standin": "bold yellow"}


@dataclass(frozen=True)
class Frame:
    """Everything one refresh read."""

    at: datetime
    gateways: list[GatewayView]
    etcd: EtcdView | None = None
    journal: JournalView | None = None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _shown(mode: str | None) -> str:
    """Stand-in, forced or not, in capitals: it is what an operator must not miss."""
    return (mode or "?").upper() if mode in ("stand-in", "forced-standin") else (mode or "?")


def _mode(mode: str | None) -> Text:
    return Text(_shown(mode), style=_MODE_STYLE.get(mode or "", "yellow"))


def _requests(by_edge: dict[str, float]) -> str:
    """Requests per second, and per edge when more than one edge has received any."""
    total = f"{sum(by_edge.values()):.1f}"
    if len(by_edge) < 2:
        return total
    return total + " (" + ", ".join(f"{edge} {per_s:.1f}" for edge, per_s in sorted(by_edge.items())) + ")"


def _gateways(frame: Frame) -> Table:
    table = Table(title="gateways", title_justify="left", expand=True)
    for column in ("gateway", "mode", "requests/s", "issuer/s", "stand-in/s", "p99 ms", "journal", "oldest",
                   "settled/s"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("gateway", "mode") else "right")
    for g in frame.gateways:
        if g.error is not None:
            table.add_row(g.instance, Text("DOWN", style="bold red"), g.error, *[""] * 6)
            continue
        by_source = g.answers_by_source
        journal = " ".join(f"{store} {int(n)}" for store, n in sorted(g.journal_depth.items()) if n) or "0"
        ages = [age for store, age in g.journal_oldest_s.items() if g.journal_depth.get(store)]
        oldest = max(ages, default=None)  # an empty store's age is of nothing
        table.add_row(
            g.instance,
            _mode(g.mode),
            _requests(g.requests),
            f"{by_source.get('ISSUER', 0.0):.1f}",
            f"{by_source.get('STAND_IN', 0.0):.1f}",
            _ms(g.p99_ms.get("all")),
            journal,
            _age(oldest),
            f"{sum(g.settlement.values()):.1f}",
        )
    return table


def _pools(frame: Frame) -> Table:
    table = Table(title="pools and members", title_justify="left", expand=True)
    for column in ("gateway", "pool", "verdict", "members", "state of each member"):
        table.add_column(column)
    for g in frame.gateways:
        for pool in g.pools:
            counts = " ".join(f"{n} {state}" for state, n in pool.members.items() if n) or "0 members"
            states = " ".join(f"{m}:{s}" for m, s in pool.member_states.items()) or "-"
            verdict = (pool.verdict or "no member") + (" DRAINED" if pool.drained else "")
            style = "green" if pool.verdict == "ok" and not pool.drained else "red"
            table.add_row(g.instance, pool.name, Text(verdict, style=style), counts, states)
    if frame.etcd is not None and frame.etcd.error is None:
        for name, (drained, members) in sorted(frame.etcd.pools.items()):
            listed = " ".join(f"{m}@{a}" for m, a in members.items()) or "no member registered"
            table.add_row("etcd", name, "DRAINED" if drained else "", f"{len(members)} registered", listed)
    return table


def _answers(frame: Frame) -> Table:
    """One row per source: its total and each response code seen in the interval (fleet sums)."""
    table = Table(title="answers/s by source and response code (fleet)", title_justify="left", expand=True)
    table.add_column("source")
    table.add_column("per s", justify="right")
    table.add_column("by response code")
    fleet: dict[str, dict[str, float]] = {}
    for g in frame.gateways:
        for (source, code), per_s in g.answers.items():
            codes = fleet.setdefault(source, {})
            codes[code] = codes.get(code, 0.0) + per_s
    for source, codes in sorted(fleet.items()):
        shown = "  ".join(f"{code}: {per_s:.1f}" for code, per_s in sorted(codes.items()) if per_s > 0)
        table.add_row(source, f"{sum(codes.values()):.1f}", shown or "-")
    return table


def _exposure_lines(frame: Frame) -> Iterable[str]:
    exported = [g for g in frame.gateways if g.exposure]
    for g in exported:
        for key, amount in sorted(g.exposure.items()):
            budget = g.exposure_budget.get(key)
            used = "" if not budget else f" of budget {budget:.0f} ({amount / budget:.0%})"
            yield f"exposure {key} ({g.instance}): {amount:.0f} minor units{used}"
    if not any(g.exposure_budget for g in frame.gateways):
        exposure = "no exposure metric" if not exported else "exposure"
        yield (
            f"{exposure} exported, no budget metric exported yet (authgw.standin.exposure, .exposure_budget):"
            " exposure alone" + ("" if exported else ", from the journal")
        )
    journal = frame.journal
    if journal is not None and journal.error is None:
        amounts = ", ".join(f"{c} {a} minor units" for c, a in sorted(journal.approved_hour.items()))
        yield (
            f"stand-in approvals, last hour (journal, as seen since top started): {journal.approvals_hour}"
            f"{', ' + amounts if amounts else ''}"
        )


def _standin(frame: Frame) -> Table:
    table = Table(title="stand-in and settlement", title_justify="left", show_header=False, expand=True)
    table.add_column("what")
    for line in _exposure_lines(frame):
        table.add_row(line)
    journal = frame.journal
    if journal is not None:
        if journal.error is not None:
            table.add_row(Text(journal.error, style="red"))
        else:
            table.add_row(
                f"journal (Redis, fleet): {journal.entries} unsettled, {journal.pending} delivered not acked,"
                f" {journal.dead_letters} dead letters, oldest {_age(journal.oldest_age_s)}"
            )
    settled = sum(sum(g.settlement.values()) for g in frame.gateways)
    table.add_row(f"settlement: {settled:.1f} advices/s")
    return table


def _header(frame: Frame) -> Text:
    modes = sorted({_shown(g.mode) for g in frame.gateways if g.error is None})
    shown = f"mode {', '.join(modes)}" if modes else "no gateway answered"
    text = f"authgw top  {frame.at:%H:%M:%S}  {len(frame.gateways)} gateway(s)  {shown}"
    if frame.etcd is not None:
        etcd = frame.etcd
        text += (
            f"  |  etcd: {etcd.error}"
            if etcd.error
            else (f"  |  etcd mode {etcd.mode}, {len(etcd.gateways)} gateway(s) registered")
        )
    return Text(text, style="bold")


def render(frame: Frame) -> RenderableType:
    """The whole frame."""
    return Group(_header(frame), _gateways(frame), _standin(frame), _answers(frame), _pools(frame))
