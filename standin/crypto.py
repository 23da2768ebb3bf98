"""PAN encryption for journal entries: AES-256-GCM, bound to the decision; keys that rotate.

The ciphertext is `base64(nonce(12) || ciphertext || tag(16))`. The decision id
is the associated data, so a ciphertext copied into another entry fails to
decrypt instead of silently attaching a PAN to the wrong decision. `key_id` (the
first 8 hex digits of SHA-256 of the key) is stored beside it so that after a key
rotation settlement knows which key an entry needs.

Rotation (`PanKeyring`): new entries are sealed with the current key; retired keys
only open the entries sealed before the rotation, until they are settled
(`authgw standin status` counts pending entries per key id). An entry whose key id
is in neither is an `UnknownPanKeyError` naming that id: settlement dead-letters it,
and it is sent again once the key is configured (`authgw standin replay --dead-letters`).
The id is derived from the key, never chosen, so an entry can only ever name the key
that sealed it, and a config that gives a retired key the wrong id is refused at load.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from standin.errors import EntryFormatError, UnknownPanKeyError

__all__ = ["PanCipher", "PanKeyring", "pan_key_id"]

_NONCE_BYTES = 12
_KEY_BYTES = 32


def pan_key_id(key: bytes) -> str:
    """The id journal entries record for `key`: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


class PanCipher:
    """Encrypts and decrypts PANs with one AES-256-GCM key."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise ValueError(f"PAN key must be exactly {_KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = pan_key_id(key)

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


class PanKeyring:
    """The current PAN key, which seals new entries, and retired keys, which only open older ones."""

    __slots__ = ("_by_id", "current")

    def __init__(self, current: PanCipher, retired: Iterable[PanCipher] = ()) -> None:
        self.current = current
        self._by_id = {current.key_id: current}
        for cipher in retired:
            if cipher.key_id in self._by_id:
                raise ValueError(f"PAN key {cipher.key_id} is configured twice")
            self._by_id[cipher.key_id] = cipher

    @classmethod
    def of(cls, current: bytes, retired: Iterable[bytes] = ()) -> PanKeyring:
        """A keyring from raw 32-byte keys."""
        return cls(PanCipher(current), [PanCipher(k) for k in retired])

    @property
    def key_id(self) -> str:
        """The id of the current key (what new entries record)."""
        return self.current.key_id

    @property
    def retired_ids(self) -> tuple[str, ...]:
        return tuple(k for k in self._by_id if k != self.current.key_id)

    def knows(self, key_id: str) -> bool:
        return key_id in self._by_id

    def seal(self, pan: str, decision_id: str) -> tuple[str, str]:
        """(pan_enc, pan_key_id) of `pan` for the entry of `decision_id`, under the current key."""
        return self.current.encrypt(pan, decision_id), self.current.key_id

    def open(self, pan_enc: str, decision_id: str, key_id: str) -> str:
        """The PAN sealed for `decision_id` under the key `key_id` (current or retired)."""
        cipher = self._by_id.get(key_id)
        if cipher is None:
            retired = ", ".join(self.retired_ids) or "none"
            raise UnknownPanKeyError(
                f"journal entry {decision_id}: PAN sealed with key {key_id}, which is not configured"
                f" (current {self.key_id}, retired: {retired}); add it to [keys] retired_pan_keys",
                key_id=key_id,
            )
        return cipher.decrypt(pan_enc, decision_id)

    def __repr__(self) -> str:
        return f"PanKeyring(current={self.key_id}, retired={list(self.retired_ids)})"
