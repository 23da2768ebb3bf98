"""authgw.validation: the field rules both edges share, and the small set of imports that lets them."""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

import pytest

from authgw.validation import (
    COUNTRIES,
    NON_TRANSACTION_CURRENCIES,
    TRANSACTION_CURRENCIES,
    country_problem,
    currency_problem,
    sent_time_problem,
)
from chaos.pki import PLAINTEXT
from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.gateway_fixtures import gateway_config

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_756_574_700.0  # 2025-08-30 17:25 UTC
DAY = 86_400.0

# Every code ISO 4217 lists that no card transaction is in (the list).
REFUSED_CURRENCIES = [
    *("XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XDR", "XBA", "XBB", "XBC", "XBD", "XSU", "XUA", "XAD"),
    *("BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW"),
]
USER_ASSIGNED = ["AA", "ZZ", *(f"Q{c}" for c in "MNOPQRSTUVWXYZ"), *(f"X{c}" for c in string.ascii_uppercase)]


@pytest.mark.parametrize("code", REFUSED_CURRENCIES)
def test_non_transaction_currency_refused(code: str) -> None:
    """Funds, metals, bond units, SDR, test and no-currency codes are refused, though ISO 4217 lists them."""
    assert code in NON_TRANSACTION_CURRENCIES
    assert currency_problem(code) is not None


@pytest.mark.parametrize("code", ["EUR", "USD", "JPY", "CHF", "GBP", "XAF", "XOF", "XCD", "XPF", "XCG"])
def test_transaction_currency_accepted(code: str) -> None:
    """Currencies people pay in, the supranational X codes (CFA francs, East Caribbean dollar...) included."""
    assert currency_problem(code) is None


def test_only_five_x_codes_are_money() -> None:
    """Of the X codes only XAF, XCD, XCG, XOF and XPF are money; nothing unknown slips in."""
    assert {c for c in TRANSACTION_CURRENCIES if c.startswith("X")} == {"XAF", "XCD", "XCG", "XOF", "XPF"}
    assert currency_problem("EUX") is not None and currency_problem("eur") is not None
    assert len(TRANSACTION_CURRENCIES) > 150


@pytest.mark.parametrize("code", [*USER_ASSIGNED, "F1", "UK", "EU", "fr", "FRA", ""])
def test_unassigned_country_refused(code: str) -> None:
    """User-assigned (AA, QM-QZ, XA-XZ, ZZ), reserved (UK, EU) and malformed codes are no country."""
    assert country_problem(code) is not None


def test_assigned_countries_accepted() -> None:
    """Every officially assigned alpha-2 code (249 of them) is a country."""
    assert len(COUNTRIES) == 249
    assert all(country_problem(c) is None for c in ("FR", "DE", "US", "GB", "JP", "ZA"))


@pytest.mark.parametrize(
    ("seconds", "nanos", "accepted"),
    [
        (int(NOW), 0, True),
        (int(NOW - DAY), 0, True),  # exactly the window: still in
        (int(NOW + DAY), 0, True),
        (int(NOW - DAY) - 1, 0, False),
        (int(NOW + DAY), 1, False),  # a nanosecond past the window
        (-(10**12), 0, False),  # before year 1: no datetime can hold it
        (2**63 - 1, 999_999_999, False),
        (int(NOW), -1, False),
        (int(NOW), 1_000_000_000, False),
    ],
)
def test_sent_time_window(seconds: int, nanos: int, accepted: bool) -> None:
    """A sent time is accepted within the window either side of now, bounds included; nanos 0-999999999."""
    assert (sent_time_problem(seconds, nanos, NOW, DAY) is None) is accepted


def test_sent_time_problem_says_which_way() -> None:
    """The rule says the window and how far the time is, behind or ahead."""
    assert sent_time_problem(int(NOW - 3 * DAY), 0, NOW, DAY) == (
        "must be within 1d of the gateway's clock (UTC), is 3d behind it"
    )
    assert sent_time_problem(int(NOW + 7200), 0, NOW, 60.0) == (
        "must be within 1m of the gateway's clock (UTC), is 2h ahead of it"
    )
    assert sent_time_problem(int(NOW), -1, NOW, DAY) == "nanos must be 0-999999999"


def test_window_is_configured_with_a_duration() -> None:
    """[gateway] transmitted_at_window: a day by default, a duration when set, out of range refused."""
    assert gateway_config([("p", ["127.0.0.1:1"])]).transmitted_at_window_s == DAY
    cfg = gateway_config([("p", ["127.0.0.1:1"])], extra={"gateway": {"transmitted_at_window": "90m"}})
    assert cfg.transmitted_at_window_s == 5400.0
    doc = {"gateway": {"transmitted_at_window": "0s"}, "pools": [{"name": "p", "members": []}], **PLAINTEXT}
    with pytest.raises(ConfigError, match=r"gateway\.transmitted_at_window: 0s is out of range"):
        parse_config(doc, "gw.toml")


_IMPORTED = """
import json, sys
before = set(sys.modules)
import authgw.validation as v
v.currency_problem("EUR"); v.country_problem("FR")
new = {name.split(".")[0] for name in set(sys.modules) - before}
print(json.dumps(sorted(n for n in new if n not in sys.stdlib_module_names)))
"""


def test_rules_import_only_pycountry() -> None:
    """The ISO 8583 edge can use the rules as it is: they load no gateway, protobuf or grpc module."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert set(json.loads(result.stdout)) <= {"authgw", "pycountry"}
