"""Verification results the acquirer obtained: a failed check declines 05, an absent one costs a tier."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_fixtures import auth_request
from helpers import PAN_VISA
from test_standin_support import engine, luhn_pan, policy, request

from authgw.v1 import authorization_pb2 as pb
from gateway.standin_link import to_standin_request
from standin import Channel, Reason, ResponseCode, StandInRequest
from standin.rules import assess
from standin.types import Check, CheckResult

ECOM_CVV = policy(verification_absent_points={Channel.ECOMMERCE: {Check.CVV: 1}})
# 3-D Secure e-commerce at home: 1 risk point (tier "reduced", half the limits: 25,000 max)
ONLINE = {"channel": Channel.ECOMMERCE, "cardholder_authenticated": True, "pin_verified": False}


def online(pan: str, amount_minor: int, **kw: object) -> StandInRequest:
    return request(luhn_pan(pan), amount_minor=amount_minor, **ONLINE, **kw)


@pytest.mark.parametrize("check", list(Check))
def test_a_failed_check_is_declined_05_by_its_rule(check: Check) -> None:
    """A failed CVV, cryptogram or PIN: 05 verification.<check>, whatever the limits."""
    decline = assess(policy(), request(PAN_VISA, **{check.value: CheckResult.FAILED})).decline
    assert decline is not None
    assert (decline.code, decline.rule) == (ResponseCode.DO_NOT_HONOUR, f"verification.{check}")


def test_verified_and_absent_results_decline_nothing_by_default() -> None:
    """The default policy sets no points for an absent result: most terminal traffic carries none."""
    absent = assess(policy(), online("4300", 15_000))
    verified = assess(policy(), online("4300", 15_000, cvv=CheckResult.VERIFIED))
    assert absent.decline is None and verified.decline is None
    assert absent.tier == verified.tier and absent.tier.name == "reduced"


async def test_a_failed_cvv_is_declined_05_by_stand_in(redis_port: int, tmp_path: Path) -> None:
    """Through the engine and Redis: the decline is recorded with its rule."""
    async with engine(redis_port, tmp_path / "l.db") as e:
        d = await e.decide(online("4301", 1_000, cvv=CheckResult.FAILED), Reason.ALL_POOLS_FAILED)
    assert (d.approved, d.response_code, d.rule) == (False, ResponseCode.DO_NOT_HONOUR, "verification.cvv")


async def test_an_absent_cvv_gets_the_higher_tiers_limits(redis_port: int, tmp_path: Path) -> None:
    """15,000 online: in the reduced tier's limits with a verified CVV, above the minimal tier's without."""
    async with engine(redis_port, tmp_path / "l.db", pol=ECOM_CVV) as e:
        verified = await e.decide(online("4302", 15_000, cvv=CheckResult.VERIFIED), Reason.ALL_POOLS_FAILED)
        absent = await e.decide(online("4303", 15_000), Reason.ALL_POOLS_FAILED)
        small = await e.decide(online("4304", 5_000), Reason.ALL_POOLS_FAILED)  # groceries: 0.2 x 30,000
    assert (verified.approved, verified.risk_tier) == (True, "reduced")
    assert (absent.approved, absent.response_code, absent.risk_tier) == (
        False, ResponseCode.EXCEEDS_AMOUNT_LIMIT, "minimal",
    )  # fmt: skip
    assert (small.approved, small.risk_tier) == (True, "minimal")


def test_the_gateway_maps_the_contracts_verification_results() -> None:
    """AuthorizeRequest.verification: PASSED -> verified, FAILED -> failed, NOT_CHECKED or unset -> absent."""
    checks = pb.Verification(card_verification_value=pb.FAILED, chip_cryptogram=pb.PASSED)
    mapped = to_standin_request(auth_request(verification=checks))
    assert (mapped.cvv, mapped.cryptogram, mapped.pin) == (
        CheckResult.FAILED,
        CheckResult.VERIFIED,
        CheckResult.ABSENT,
    )
    unset = to_standin_request(auth_request())
    assert {unset.check(c) for c in Check} == {CheckResult.ABSENT}
