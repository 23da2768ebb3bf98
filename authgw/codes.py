"""ISO 8583 field 39 response codes: the one enum every package and edge uses."""

from __future__ import annotations

import enum

__all__ = ["ResponseCode"]


class ResponseCode(enum.StrEnum):
    """ISO 8583 field 39 (response code) values authgw answers or reads."""

    APPROVED = "00"  # approved or completed successfully
    DO_NOT_HONOUR = "05"  # do not honour: card blocked by the issuer
    INVALID_CARD_NUMBER = "14"  # invalid card number (no such number / fails Luhn)
    FORMAT_ERROR = "30"  # format error (the ISO 8583 edge: a message that does not decode)
    LOST_CARD = "41"  # lost card, pick up
    STOLEN_CARD = "43"  # stolen card, pick up
    INSUFFICIENT_FUNDS = "51"  # not sufficient funds (stand-in: above the issuer's last reported balance)
    EXPIRED_CARD = "54"  # expired card
    NOT_PERMITTED_TO_CARDHOLDER = "57"  # transaction not permitted to cardholder
    EXCEEDS_AMOUNT_LIMIT = "61"  # exceeds withdrawal amount limit
    EXCEEDS_FREQUENCY_LIMIT = "65"  # exceeds withdrawal frequency limit
    ISSUER_UNAVAILABLE = "91"  # issuer or switch inoperative: no safe decision possible
    DUPLICATE_TRANSMISSION = "94"  # duplicate transmission (a reused request id with other content)
    SYSTEM_MALFUNCTION = "96"  # system malfunction

    @property
    def approved(self) -> bool:
        return self is ResponseCode.APPROVED

    @property
    def system_decline(self) -> bool:
        """91 or 96: the answerer could not decide (a failure to route around, not a decision)."""
        return self is ResponseCode.ISSUER_UNAVAILABLE or self is ResponseCode.SYSTEM_MALFUNCTION
