"""How good were the stand-in decisions: stand-in approve/decline against what the issuer would say.

The business measure of stand-in: good customers declined (false declines) against money
approved that the issuer would have refused (false approvals). The issuer's shadow decision is
the simulator's own decision function (`card_profiles.decide`: card status, then the amount
against the available balance) applied, without posting, to the card as the issuer's books would
stand when the request came: its opening balance minus every approval answered before it in the
run (the issuer's own, and stand-in's, which settlement posts as advices). Reversals are not
subtracted, so the shadow issuer is, if anything, stricter than the real one late in a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich.table import Table

from chaos.card_profiles import card_profile, decide
from chaos.samples import Sample

__all__ = ["Cell", "Confusion", "confusion", "confusion_table", "from_dict", "rules_dict"]


@dataclass
class Cell:
    """Requests of one cell of the matrix and their amount (minor units)."""

    count: int = 0
    amount_minor: int = 0

    def add(self, amount_minor: int) -> None:
        self.count += 1
        self.amount_minor += amount_minor


@dataclass
class Confusion:
    """Stand-in's decisions against the issuer's shadow decisions."""

    both_approve: Cell = field(default_factory=Cell)
    false_approve: Cell = field(default_factory=Cell)  # stand-in approved, the issuer would decline
    false_decline: Cell = field(default_factory=Cell)  # stand-in declined, the issuer would approve
    both_decline: Cell = field(default_factory=Cell)
    false_declines_by_rule: dict[str, Cell] = field(default_factory=dict)
    """The false declines by the stand-in rule that declined them: which rule costs good customers."""

    def as_dict(self) -> dict[str, dict[str, int]]:
        cells = ("both_approve", "false_approve", "false_decline", "both_decline")
        return {
            name: {"count": (c := getattr(self, name)).count, "amount_minor": c.amount_minor}
            for name in cells
        }

    @property
    def decided(self) -> int:
        return sum(
            c.count for c in (self.both_approve, self.false_approve, self.false_decline, self.both_decline)
        )


def confusion(samples: Sequence[Sample], pan_of: Mapping[str, str]) -> Confusion:
    """The matrix of every answered stand-in decision (acquirer advices excluded: not decided).

    `pan_of`: (acquirer_id, request_id) → PAN, the acquirer's own memory of what it sent.
    """
    matrix = Confusion()
    spent: dict[str, int] = {}
    for sample in sorted(samples, key=lambda s: s.sent_at):
        pan = pan_of.get(f"{sample.acquirer_id}:{sample.request_id}")
        if pan is None or sample.reused or not sample.response_code:
            continue
        if sample.source == "STAND_IN" and not sample.advice:
            profile = card_profile(pan)
            available = profile.balance_minor - spent.get(pan, 0)
            issuer_approves = decide(profile.status, available, sample.amount_minor) == "00"
            cell = (
                (matrix.both_approve if issuer_approves else matrix.false_approve)
                if sample.approved
                else (matrix.false_decline if issuer_approves else matrix.both_decline)
            )
            cell.add(sample.amount_minor)
            if cell is matrix.false_decline:
                rule = sample.answers[-1].rule if sample.answers else ""
                matrix.false_declines_by_rule.setdefault(rule or "?", Cell()).add(sample.amount_minor)
        if sample.approved:
            spent[pan] = spent.get(pan, 0) + sample.amount_minor
    return matrix


def from_dict(cells: Mapping[str, Mapping[str, int]]) -> Confusion:
    """The matrix a report holds (Confusion.as_dict) back."""
    matrix = Confusion()
    for name, c in cells.items():
        setattr(matrix, name, Cell(c["count"], c["amount_minor"]))
    return matrix


def confusion_table(matrix: Confusion, title: str = "stand-in vs issuer (shadow)") -> Table:
    """The matrix in counts and amounts (minor units)."""
    table = Table(title=title)
    for column in ("stand-in \\ issuer", "issuer approves", "issuer declines"):
        table.add_column(column)
    table.add_row("approved", _cell(matrix.both_approve), _cell(matrix.false_approve) + " (false approvals)")
    table.add_row("declined", _cell(matrix.false_decline) + " (false declines)", _cell(matrix.both_decline))
    if matrix.false_declines_by_rule:
        ranked = rules_dict(matrix).items()
        table.caption = "false declines by rule: " + ", ".join(f"{r} {v['count']}" for r, v in ranked)
    return table


def rules_dict(matrix: Confusion) -> dict[str, dict[str, int]]:
    """The false declines by rule, most first, as a report holds them."""
    ranked = sorted(matrix.false_declines_by_rule.items(), key=lambda kv: -kv[1].count)
    return {rule: {"count": c.count, "amount_minor": c.amount_minor} for rule, c in ranked}


def _cell(cell: Cell) -> str:
    return f"{cell.count} / {cell.amount_minor}"
