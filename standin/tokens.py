"""Card tokens: the only identity of a card stand-in stores or logs.

A token is HMAC-SHA256(secret, PAN), truncated to 128 bits and hex-encoded.
Without the secret a token cannot be linked back to a PAN (no brute force over
the ~10^9 PANs of a BIN range, unlike a plain hash); 128 bits keep keys short
while collisions stay negligible for any card base.

Changing the key changes every card's token, so everything kept per card under
the old one is invisible afterwards: idempotency records and the keyed content
digests (a repeated request is decided again; a reused id is not refused), the
velocity windows (a card may get twice its limits), reversal records and holds,
the unadvised counters that keep a reversal behind its original, the issuer's
card statuses, and the journal partition of the card. No grace period with both
keys is possible: on Redis Cluster the old and the new token of a card hash to
different slots, and a decision is one script in one slot. So the key is
rotated only when no per-card state is alive (README, "Rotating keys": after
`journal.idempotency_ttl` without stand-in, journal and local backlogs empty,
card statuses loaded under the new key first). `key_id` names the key in the
settlement heartbeats so an operator sees when every gateway runs the new one.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["TOKEN_HEX_CHARS", "CardTokenizer", "token_key_id"]

TOKEN_HEX_CHARS = 32
_MIN_KEY_BYTES = 32


def token_key_id(key: bytes) -> str:
    """A short public name of a token key (8 hex): which key each gateway runs, for a rotation."""
    return hashlib.sha256(b"authgw token key id\x1f" + key).hexdigest()[:8]


class CardTokenizer:
    """Turns PANs into stable, keyed, irreversible tokens."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(f"token key must be at least {_MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        self.key_id = token_key_id(key)

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
