"""PAN encryption for journal entries: AES-256-GCM, bound to the decision.

The ciphertext is `base64(nonce(12) || ciphertext || tag(16))`. The decision id
is the associated data, so a ciphertext copied into another entry fails to
decrypt instead of silently attaching a PAN to the wrong decision. `key_id` (the
first 8 hex digits of SHA-256 of the key) is stored beside it so that after a key
rotation settlement knows which key an entry needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from standin.errors import EntryFormatError

__all__ = ["PanCipher"]

_NONCE_BYTES = 12
_KEY_BYTES = 32


class PanCipher:
    """Encrypts and decrypts PANs with one AES-256-GCM key."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise ValueError(f"PAN key must be exactly {_KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def encrypt(self, pan: str, decision_id: str) -> str:
        """Encrypt `pan` for the entry of `decision_id`; returns base64 text."""
        nonce = os.urandom(_NONCE_BYTES)  # random 96-bit nonces: safe far beyond 2^32 messages per key
        sealed = self._aead.encrypt(nonce, pan.encode("ascii"), decision_id.encode("utf-8"))
        return base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, pan_enc: str, decision_id: str) -> str:
        """Decrypt a PAN sealed by `encrypt` for the same `decision_id`."""
        try:
            raw = base64.b64decode(pan_enc, validate=True)
            clear = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], decision_id.encode("utf-8"))
        except (binascii.Error, InvalidTag, ValueError) as exc:
            raise EntryFormatError(f"decision {decision_id}: encrypted PAN does not authenticate") from exc
        return clear.decode("ascii")

    def __repr__(self) -> str:
        return f"PanCipher(key_id={self.key_id})"
