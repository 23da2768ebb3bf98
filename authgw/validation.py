"""Field rules every edge applies alike: currencies, countries, and how far a sent time may be from ours.

The gRPC edge (gateway/edges/validation.py) and the ISO 8583 edge (authgw.iso8583) refuse the same
values, so the rules live here, with no import of either edge: only the stdlib and pycountry.

Each check returns None for an acceptable value, else the rule it breaks, worded to follow the
field's name ("currency: must be ..."). The caller names the field in its own error (the gRPC
edge's InvalidRequest, INVALID_ARGUMENT; field 39 = 30 at the ISO 8583 edge). Returning rather than
raising keeps the valid path free of exception set-up and this module free of the edges' errors.

Reference sets come from pycountry (ISO 4217 and ISO 3166-1 as Debian's iso-codes ship them, not
hand-typed lists) and are built once at import: a check on the hot path is one frozenset lookup.
"""

from __future__ import annotations

import pycountry

__all__ = [
    "COUNTRIES",
    "FUND_CURRENCIES",
    "NON_TRANSACTION_CURRENCIES",
    "TRANSACTION_CURRENCIES",
    "country_problem",
    "currency_problem",
    "sent_time_problem",
]

# ISO 4217 fund codes: units of account beside a currency (Bolivian Mvdol, WIR francs, the Chilean,
# Colombian, Mexican and Uruguayan inflation-indexed units, US next-day dollars). Nothing is bought
# with them at a terminal.
FUND_CURRENCIES: frozenset[str] = frozenset({"BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW"})

# ISO 4217 gives codes beginning with X to supranational currencies and to special codes: precious
# metals (XAU, XAG, XPD, XPT), bond-market units (XBA-XBD), SDR (XDR), SUCRE (XSU), ADB unit (XUA),
# Arab accounting dinar (XAD), testing (XTS), no currency (XXX). Only these X codes are money a
# cardholder spends; any other X code, including one pycountry adds later, is refused.
_SUPRANATIONAL_CURRENCIES = frozenset({"XAF", "XCD", "XCG", "XOF", "XPF"})

_ISO_4217 = frozenset(str(c.alpha_3) for c in pycountry.currencies)

NON_TRANSACTION_CURRENCIES: frozenset[str] = FUND_CURRENCIES | frozenset(
    code for code in _ISO_4217 if code.startswith("X") and code not in _SUPRANATIONAL_CURRENCIES
)
TRANSACTION_CURRENCIES: frozenset[str] = _ISO_4217 - NON_TRANSACTION_CURRENCIES

# Officially assigned ISO 3166-1 alpha-2 codes. The user-assigned ones (AA, QM-QZ, XA-XZ, ZZ; so
# Kosovo's XK as well) and reserved or withdrawn codes are no country: an acquirer that does not
# know the merchant's country leaves the field empty.
COUNTRIES: frozenset[str] = frozenset(str(c.alpha_2) for c in pycountry.countries)

_CURRENCY_RULE = "must be an ISO 4217 transaction currency such as EUR (not a fund, metal or test code)"
_COUNTRY_RULE = "must be an officially assigned ISO 3166-1 alpha-2 country code such as FR"
_MAX_NANOS = 999_999_999


def currency_problem(code: str) -> str | None:
    """None for an ISO 4217 currency a card transaction can be in, else the rule."""
    return None if code in TRANSACTION_CURRENCIES else _CURRENCY_RULE


def country_problem(code: str) -> str | None:
    """None for an officially assigned ISO 3166-1 alpha-2 code, else the rule."""
    return None if code in COUNTRIES else _COUNTRY_RULE


def sent_time_problem(seconds: int, nanos: int, now_s: float, window_s: float) -> str | None:
    """None when seconds.nanos since the Unix epoch (UTC) is within window_s of now_s, else the rule.

    A sender's clock is never exactly ours, so the window is generous (a day by default); what it
    refuses is a time no honest sender puts on a live request (a replay, an unset clock, an
    overflow), which would otherwise reach stand-in's limits and journal.
    """
    offset = seconds - now_s + nanos / 1e9
    if -window_s <= offset <= window_s and 0 <= nanos <= _MAX_NANOS:
        return None
    if not 0 <= nanos <= _MAX_NANOS:
        return f"nanos must be 0-{_MAX_NANOS}"
    when = "ahead of" if offset > 0 else "behind"
    return f"must be within {_span(window_s)} of the gateway's clock (UTC), is {_span(abs(offset))} {when} it"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86_400.0), ("h", 3_600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.4g}{unit}"
    return f"{seconds:.3g}s"
