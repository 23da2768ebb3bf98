"""Values of single data elements: amounts, currency (49), dates (7, 12, 13), composite fields 43, 54, 90, 95.

Each builder returns the field's wire text; each parser takes it back and raises FormatError
naming the field when the text does not follow the layout.

pycountry reads its currency table from disk on first use (about a millisecond): a process
converts one currency at start-up so that no request pays that read on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pycountry

from authgw.iso8583.errors import FormatError

__all__ = [
    "AVAILABLE_BALANCE",
    "AdditionalAmount",
    "MerchantLocation",
    "OriginalData",
    "available_balance",
    "currency_alpha3",
    "currency_numeric",
    "find_available_balance",
    "format_additional_amounts",
    "format_amount",
    "local_date_time",
    "parse_additional_amounts",
    "parse_amount",
    "parse_final_amount",
    "replacement_amounts",
    "transmission_time",
]

AVAILABLE_BALANCE = "02"  # field 54 amount type of the cardholder's available balance
_ENTRY_LENGTH = 20  # field 54: account type 2, amount type 2, currency 3, sign 1, amount 12
_MAX_AMOUNT = 10**12 - 1  # n12


def format_amount(amount_minor: int, field: str = "4") -> str:
    """An amount in minor units as n12 (zero-filled)."""
    if not 0 <= amount_minor <= _MAX_AMOUNT:
        raise FormatError(f"amount must be 0 to {_MAX_AMOUNT} minor units", field=field)
    return f"{amount_minor:012d}"


def parse_amount(text: str, field: str = "4") -> int:
    """An n12 amount back to minor units."""
    if len(text) != 12 or not (text.isascii() and text.isdigit()):
        raise FormatError("amount must be exactly 12 digits", field=field)
    return int(text)


def currency_numeric(alpha3: str) -> str:
    """ISO 4217 alphabetic code (EUR) to the numeric code field 49 carries (978)."""
    currency = pycountry.currencies.get(alpha_3=alpha3.upper()) if len(alpha3) == 3 else None
    if currency is None:
        raise FormatError("currency is not an ISO 4217 alphabetic code", field="49")
    return str(currency.numeric)


def currency_alpha3(numeric: str) -> str:
    """Field 49's ISO 4217 numeric code (978) to the alphabetic code (EUR)."""
    currency = pycountry.currencies.get(numeric=numeric) if len(numeric) == 3 else None
    if currency is None:
        raise FormatError("currency is not an ISO 4217 numeric code", field="49")
    return str(currency.alpha_3)


def transmission_time(at: datetime) -> str:
    """Field 7, MMDDhhmmss in UTC, from an aware datetime."""
    if at.tzinfo is None:
        raise FormatError("transmission time needs an aware datetime (UTC is sent)", field="7")
    return at.astimezone(UTC).strftime("%m%d%H%M%S")


def local_date_time(at: datetime) -> tuple[str, str]:
    """Fields 12 (hhmmss) and 13 (MMDD) from the card acceptor's local time, as given."""
    return at.strftime("%H%M%S"), at.strftime("%m%d")


@dataclass(frozen=True, slots=True)
class AdditionalAmount:
    """One 20-character entry of field 54; a negative amount is written with sign D (debit)."""

    account_type: str  # 2 digits: 00 default, 10 savings, 20 checking, 30 credit
    amount_type: str  # 2 digits: 01 ledger balance, 02 available balance
    currency: str  # ISO 4217 numeric, 3 digits
    amount_minor: int

    def encode(self) -> str:
        """The entry as it stands in field 54."""
        for name, value, size in (
            ("account type", self.account_type, 2),
            ("amount type", self.amount_type, 2),
            ("currency", self.currency, 3),
        ):
            if len(value) != size or not (value.isascii() and value.isdigit()):
                raise FormatError(f"{name} must be {size} digits", field="54")
        sign = "D" if self.amount_minor < 0 else "C"
        amount = format_amount(abs(self.amount_minor), field="54")
        return f"{self.account_type}{self.amount_type}{self.currency}{sign}{amount}"


def available_balance(amount_minor: int, currency_alpha: str, account_type: str = "00") -> AdditionalAmount:
    """The field 54 entry an issuer uses to return the available balance."""
    return AdditionalAmount(account_type, AVAILABLE_BALANCE, currency_numeric(currency_alpha), amount_minor)


def format_additional_amounts(entries: Sequence[AdditionalAmount]) -> str:
    """Field 54 text: the entries one after another (at most 6)."""
    if not 1 <= len(entries) <= 6:
        raise FormatError("carries 1 to 6 amount entries", field="54")
    return "".join(entry.encode() for entry in entries)


def parse_additional_amounts(text: str) -> tuple[AdditionalAmount, ...]:
    """Field 54 text back to its entries."""
    if not text or len(text) % _ENTRY_LENGTH:
        raise FormatError(f"must be whole {_ENTRY_LENGTH}-character entries", field="54")
    entries = []
    for start in range(0, len(text), _ENTRY_LENGTH):
        raw = text[start : start + _ENTRY_LENGTH]
        digits = raw[:7] + raw[8:]
        if raw[7] not in "CD" or not (digits.isascii() and digits.isdigit()):
            raise FormatError("entry must be account 2, type 2, currency 3, C/D, amount 12", field="54")
        amount = int(raw[8:])
        entries.append(AdditionalAmount(raw[:2], raw[2:4], raw[4:7], -amount if raw[7] == "D" else amount))
    return tuple(entries)


def find_available_balance(entries: Sequence[AdditionalAmount]) -> AdditionalAmount | None:
    """The available-balance entry of field 54, if the issuer sent one."""
    return next((e for e in entries if e.amount_type == AVAILABLE_BALANCE), None)


def replacement_amounts(final_amount_minor: int) -> str:
    """Field 95 of a partial reversal: the final transaction amount, then zeroed settlement and fees."""
    # 12 actual transaction amount, 12 actual settlement amount, 9 + 9 fees (sign C, 8 digits).
    return f"{format_amount(final_amount_minor, field='95')}{0:012d}C{0:08d}C{0:08d}"


def parse_final_amount(text: str) -> int:
    """The final transaction amount of a partial reversal: field 95's first 12 digits."""
    if len(text) != 42:
        raise FormatError("must be exactly 42 characters", field="95")
    return parse_amount(text[:12], field="95")


@dataclass(frozen=True, slots=True)
class OriginalData:
    """Field 90: which message a reversal or advice refers to."""

    mti: str  # 4 digits
    stan: str  # 6 digits
    transmitted: str  # the original field 7, MMDDhhmmss
    acquirer_id: str = ""  # up to 11 digits, zero-filled on the left
    forwarding_id: str = ""  # up to 11 digits, zero-filled on the left

    def encode(self) -> str:
        """The 42 digits of field 90."""
        text = f"{self.mti}{self.stan}{self.transmitted}{self.acquirer_id:0>11}{self.forwarding_id:0>11}"
        if len(text) != 42 or not (text.isascii() and text.isdigit()):
            raise FormatError("must be MTI 4, STAN 6, time 10, acquirer 11, forwarder 11 digits", field="90")
        return text

    @classmethod
    def parse(cls, text: str) -> OriginalData:
        """Field 90 back to its parts (identifiers keep their zero fill)."""
        if len(text) != 42 or not (text.isascii() and text.isdigit()):
            raise FormatError("must be exactly 42 digits", field="90")
        return cls(text[:4], text[4:10], text[10:20], text[20:31], text[31:42])


@dataclass(frozen=True, slots=True)
class MerchantLocation:
    """Field 43: name (25), city (13), ISO 3166-1 alpha-2 country (2)."""

    name: str
    city: str
    country: str

    def encode(self) -> str:
        """40 characters; a longer name or city is cut, as card schemes do."""
        if len(self.country) != 2 or not (self.country.isascii() and self.country.isalpha()):
            raise FormatError("country must be an ISO 3166-1 alpha-2 code", field="43")
        return f"{self.name[:25]:<25}{self.city[:13]:<13}{self.country.upper()}"

    @classmethod
    def parse(cls, text: str) -> MerchantLocation:
        """Field 43 back to its parts, padding removed."""
        if len(text) != 40:
            raise FormatError("must be exactly 40 characters", field="43")
        return cls(text[:25].rstrip(), text[25:38].rstrip(), text[38:])
