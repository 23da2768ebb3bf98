"""Card expiry (field 14, YYMM): the edge checks its shape; stand-in and the issuer simulator decline 54."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import PAN_VISA
from test_oracle_support import Sim, StartSim, auth_request, fresh_pan, sim_fleet
from test_standin_support import engine, request

from authgw.card_expiry import card_expired, expiry_problem
from standin import Reason, ResponseCode, StandIn

AUGUST_30 = datetime(2025, 8, 30, 17, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expiry", "at", "expired"),
    [
        ("2508", datetime(2025, 8, 31, 23, 59, 59, tzinfo=UTC), False),  # valid through its month
        ("2508", datetime(2025, 9, 1, tzinfo=UTC), True),  # expired from the next month's first day
        ("2512", datetime(2025, 12, 31, 23, 59, tzinfo=UTC), False),
        ("2512", datetime(2026, 1, 1, tzinfo=UTC), True),  # December rolls into the next year
        ("2507", AUGUST_30, True),
        ("3001", AUGUST_30, False),
    ],
)
def test_a_card_is_valid_through_its_expiry_month(expiry: str, at: datetime, expired: bool) -> None:
    """Expired from 00:00 UTC of the first day after the expiry month, not before."""
    assert card_expired(expiry, at) is expired


@pytest.mark.parametrize(("text", "rule"), [("251", "4 digits"), ("25A1", "4 digits"), ("2513", "01-12")])
def test_a_malformed_expiry_names_the_rule(text: str, rule: str) -> None:
    """Not 4 digits, or a month outside 01-12: the rule says which."""
    problem = expiry_problem(text)
    assert problem is not None and rule in problem
    assert expiry_problem("2512") is None


@pytest.fixture
async def standin(redis_port: int, tmp_path: Path) -> AsyncIterator[StandIn]:
    async with engine(redis_port, tmp_path / "local.sqlite3") as e:
        yield e


async def test_standin_declines_an_expired_card_54(standin: StandIn) -> None:
    """A card that expired before the transmission time: declined 54 by the rule card.expired."""
    decision = await standin.decide(request(PAN_VISA, card_expiry="2507"), Reason.ALL_POOLS_FAILED)
    assert (decision.approved, decision.response_code, decision.rule) == (
        False,
        ResponseCode.EXPIRED_CARD,
        "card.expired",
    )


async def test_standin_approves_a_card_in_its_expiry_month(standin: StandIn) -> None:
    """The transmission is in the expiry month (or no expiry was sent): the other rules decide."""
    for expiry in ("2508", ""):
        decision = await standin.decide(request(PAN_VISA, card_expiry=expiry), Reason.ALL_POOLS_FAILED)
        assert decision.approved, (expiry, decision.rule)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Sim]:
    start: StartSim
    async with sim_fleet(tmp_path) as start:
        yield await start()


async def test_the_issuer_simulator_declines_an_expired_card_54(sim: Sim) -> None:
    """The simulator answers 54 for a card past its expiry at transmission, and holds nothing for it."""
    pan, balance = fresh_pan()
    expired = auth_request(pan, 1_000, card_expiry="2507")
    expired.transmitted_at.FromDatetime(AUGUST_30)
    assert (await sim.send(expired)).response_code == "54"
    valid = auth_request(pan, balance, card_expiry="2508")  # the whole balance: nothing was held
    valid.transmitted_at.FromDatetime(AUGUST_30)
    assert (await sim.send(valid)).response_code == "00"
