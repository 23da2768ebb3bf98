"""The confusion matrix of stand-in decisions against the simulator issuer's shadow decisions."""

from __future__ import annotations

import itertools

from chaos.card_profiles import LOW_BALANCE_MINOR, PAN_BLOCKED, PAN_LOW_BALANCE
from chaos.confusion import Cell, confusion, rules_dict
from chaos.experiments_risk import above_known_balance
from chaos.samples import Answer, Sample

_t = itertools.count()


def answered(
    pan_of: dict[str, str], pan: str, amount: int, source: str, approved: bool, rule: str = ""
) -> Sample:
    n = next(_t)
    pan_of[f"1001:r{n}"] = pan
    sample = Sample(
        f"r{n}", float(n), amount_minor=amount, acquirer_id="1001", source=source, approved=approved,
        response_code="00" if approved else "51",
    )  # fmt: skip
    if rule:
        sample.answers.append(Answer("00" if approved else "51", approved, source, f"d{n}", rule=rule))
    return sample


def test_each_cell_by_the_issuers_books_at_the_time() -> None:
    """100.00 card: issuer approves 90.00, then stand-in approves 20.00 (false) and declines 5.00 (false)."""
    pan_of: dict[str, str] = {}
    samples = [
        answered(pan_of, PAN_LOW_BALANCE, LOW_BALANCE_MINOR - 1_000, "ISSUER", True),
        answered(pan_of, PAN_LOW_BALANCE, 2_000, "STAND_IN", True),  # 10.00 left: issuer says 51
        answered(pan_of, PAN_LOW_BALANCE, 500, "STAND_IN", False),  # nothing left after 90.00 + 20.00
        answered(pan_of, PAN_BLOCKED, 500, "STAND_IN", False),  # blocked: both decline
        answered(pan_of, "4111111111111111", 700, "STAND_IN", True),  # large balance: both approve
        answered(pan_of, "4111111111111111", 900, "STAND_IN", False),  # issuer would approve: false decline
    ]
    matrix = confusion(samples, pan_of)
    assert matrix.false_approve == Cell(1, 2_000)
    assert matrix.both_decline == Cell(2, 1_000)  # 5.00 after 90.00 + 20.00 approved, and the blocked card
    assert matrix.both_approve == Cell(1, 700)
    assert matrix.false_decline == Cell(1, 900)
    assert matrix.decided == 5


def test_false_declines_are_broken_down_by_the_rule_that_declined() -> None:
    """Two window declines and a budget decline of requests the issuer approves; a true decline
    (blocked card) is not in the breakdown."""
    pan_of: dict[str, str] = {}
    card = "4111111111111111"
    samples = [
        answered(pan_of, card, 700, "STAND_IN", False, "limit.amount.purchase"),
        answered(pan_of, card, 300, "STAND_IN", False, "limit.amount.purchase"),
        answered(pan_of, card, 900, "STAND_IN", False, "exposure_budget.outage"),
        answered(pan_of, PAN_BLOCKED, 500, "STAND_IN", False, "card_status.blocked"),
    ]
    matrix = confusion(samples, pan_of)
    assert rules_dict(matrix) == {
        "limit.amount.purchase": {"count": 2, "amount_minor": 1_000},
        "exposure_budget.outage": {"count": 1, "amount_minor": 900},
    }


def test_approvals_above_a_balance_the_issuer_reported() -> None:
    """100.00 card: the issuer approves 90.00 (10.00 left, reported); stand-in approves 6.00 (fits),
    then 5.00 (1.00 above); another card never answered by the issuer is not judged."""
    pan_of: dict[str, str] = {}
    samples = [
        answered(pan_of, PAN_LOW_BALANCE, LOW_BALANCE_MINOR - 1_000, "ISSUER", True),
        answered(pan_of, PAN_LOW_BALANCE, 600, "STAND_IN", True),
        answered(pan_of, PAN_LOW_BALANCE, 500, "STAND_IN", True),
        answered(pan_of, PAN_LOW_BALANCE, 10_000, "STAND_IN", False),  # declined: not counted
        answered(pan_of, "4111111111111111", 90_000, "STAND_IN", True),
    ]
    examples: list[str] = []
    assert above_known_balance(samples, pan_of, examples) == (1, 1, 100)
    assert len(examples) == 1
