"""Card tokens: the only identity of a card stand-in stores or logs.

A token is HMAC-SHA256(secret, PAN), truncated to 128 bits and hex-encoded.
Without the secret a token cannot be linked back to a PAN (no brute force over
the ~10^9 PANs of a BIN range, unlike a plain hash); 128 bits keep keys short
while collisions stay negligible for any card base.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["TOKEN_HEX_CHARS", "CardTokenizer"]

TOKEN_HEX_CHARS = 32
_MIN_KEY_BYTES = 32


class CardTokenizer:
    """Turns PANs into stable, keyed, irreversible tokens."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(f"token key must be at least {_MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def token(self, pan: str) -> str:
        """The card token of `pan` (32 hex characters)."""
        digest = hmac.new(self._key, pan.encode("ascii"), hashlib.sha256).hexdigest()
        return digest[:TOKEN_HEX_CHARS]

    def digest(self, content: str) -> str:
        """A keyed digest of a request's content (StandInRequest.content): it holds the PAN, so a
        plain hash could be reversed by trying the card numbers of a BIN range."""
        mac = hmac.new(self._key, b"digest\x1f" + content.encode(), hashlib.sha256).hexdigest()
        return mac[:TOKEN_HEX_CHARS]

    def __repr__(self) -> str:
        return "CardTokenizer(key=<redacted>)"
