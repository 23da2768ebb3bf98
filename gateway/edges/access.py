"""Who may call the Authorization service, and as which acquirer (the one owner of acquirer identity).

With mutual TLS (the default), the caller's client certificate has already been
checked by the handshake (chain to the configured CA, validity); here, per call:

  1. its identity (SAN URI or DNS name) must be in the allowlist (`[[acquirers]]`),
  2. the certificate must not be on the deny list (serials or SHA-256 fingerprints,
     reloaded without a restart: grpc Python has no CRL support),
  3. the request's `acquirer_id` must be the one that identity acts as.

Anything else is PERMISSION_DENIED, counted in `authgw.access.denied{reason}`, and
nothing reaches an issuer. The ISO 8583 edge checks field 32 against the same
identity. With `[tls] insecure = true` there is no identity: every caller is let
through and the plaintext warning says so every minute.

Cost per call (measured by the security package's tests): ~5 us with the
certificate's parse cached by its bytes.
"""

from __future__ import annotations

import logging
from collections import Counter

from authgw.security import AccessDecision, Allowlist, DenyList, PeerIdentity, PeerIdentityReader
from authgw.security.identity import AuthContextSource
from gateway.config_security import SecurityConfig

__all__ = ["AccessControl"]

log = logging.getLogger("authgw.access")


class AccessControl:
    """Per-call checks of the caller's certificate (see the module docstring)."""

    def __init__(self, security: SecurityConfig) -> None:
        self.plaintext = security.server.insecure
        self._reader = PeerIdentityReader()
        self._allowlist = Allowlist(security.acquirers)
        self._deny = DenyList(security.deny_list) if security.deny_list is not None else None
        self.denied: Counter[str] = Counter()
        """Calls refused, by reason label (exported as authgw.access.denied)."""

    async def start(self) -> None:
        if self._deny is not None:
            await self._deny.start()
        if not self.plaintext and not len(self._allowlist):
            log.warning("no [[acquirers]] configured: every caller will be refused")

    async def close(self) -> None:
        if self._deny is not None:
            await self._deny.close()

    def check(self, context: AuthContextSource, acquirer_id: str) -> str | None:
        """None when the caller may act as `acquirer_id`; else why not (for PERMISSION_DENIED)."""
        if self.plaintext:
            return None
        return self._check(self._reader.from_context(context), acquirer_id)

    def check_certificate(self, pem: bytes | None, acquirer_id: str | None) -> str | None:
        """As `check`, for a TLS connection outside gRPC (the ISO 8583 listener, field 32).

        `pem`: the connection's verified client certificate (None: none presented). `acquirer_id`
        None asks whether the certificate may act as any acquirer (network management carries no
        field 32). The caller skips the check on a plaintext link of its own: there is no identity.
        """
        identity = self._reader.from_pem(pem) if pem is not None else None
        if acquirer_id is not None:
            return self._check(identity, acquirer_id)
        if identity is None:
            return self._check(None, "")
        known = self._allowlist.acquirer_for(identity)
        if not known.allowed or known.acquirer_id is None:
            return self._verdict(known)
        return self._check(identity, known.acquirer_id)

    def _check(self, identity: PeerIdentity | None, acquirer_id: str) -> str | None:
        decision = self._allowlist.check(identity, acquirer_id)
        if decision.allowed and self._deny is not None and identity is not None:
            decision = self._deny.check(identity)
        return self._verdict(decision)

    def _verdict(self, decision: AccessDecision) -> str | None:
        if decision.allowed:
            return None
        self.denied[_reason_label(decision.reason)] += 1
        return decision.reason


def _reason_label(reason: str) -> str:
    """A bounded metric label for a denial (the reason text names the certificate)."""
    for needle, label in (
        ("no client certificate", "no_certificate"),
        ("not in the allowlist", "not_allowed"),
        ("may act as", "acquirer_mismatch"),
        ("revoked", "revoked"),
        ("deny", "revoked"),
    ):
        if needle in reason:
            return label
    return "other"
