"""Who is calling: the peer's certificate identity, and which acquirer that identity may act as.

On a mutual-TLS connection grpc puts the verified client certificate in
`context.auth_context()["x509_pem_cert"]`. `PeerIdentityReader.from_context`
turns it into a `PeerIdentity` (SAN DNS names and URIs, CN, serial, SHA-256
fingerprint). The certificate of a connection is the same on every call, so the
parse is cached by the PEM bytes; what is left per call is grpc building the
auth context and one dictionary look-up. Caching is safe because the bytes are
what the handshake verified: equal bytes, equal identity.

The identity IS the acquirer (DESIGN.md, "Trust boundaries"): `Allowlist` maps
a SAN URI (`spiffe://authgw.test/acquirer/ACQ001`) or DNS name to the one
`acquirer_id` it may act as, and `Allowlist.check` says whether a request's
`acquirer_id` matches, and why not. The CN is not used for that: it is free
text with no agreed syntax, where a SAN is typed.

Per call, in the servicer:

    identity = reader.from_context(context)                  # None without a client certificate
    decision = allowlist.check(identity, request.acquirer_id)
    if decision.allowed and identity is not None:
        decision = deny_list.check(identity)
    if not decision.allowed:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, decision.reason)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from authgw.security.errors import AccessDenied, SettingsError
from authgw.security.pemfile import fingerprint_sha256, parse_certificate_chain, serial_hex, subject_names

__all__ = ["AccessDecision", "Allowlist", "AuthContextSource", "PeerIdentity", "PeerIdentityReader"]

_PEM_KEY = "x509_pem_cert"


class AuthContextSource(Protocol):
    """What a grpc.aio ServicerContext offers that identity needs."""

    def auth_context(self) -> Mapping[str, Iterable[bytes]]: ...


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """The verified client certificate of a connection, as far as authorization cares."""

    common_name: str | None
    """Subject CN (etcd maps it to a user; not used to pick an acquirer)."""
    dns_names: tuple[str, ...]
    """SAN DNS names, lowercased."""
    uris: tuple[str, ...]
    """SAN URIs (SPIFFE IDs), as written."""
    serial: int
    """Certificate serial number."""
    fingerprint_sha256: str
    """SHA-256 of the DER certificate, lowercase hex."""
    pem: bytes
    """The certificate as the peer presented it."""

    @property
    def serial_hex(self) -> str:
        """Serial number as lowercase hex, as the deny list writes it."""
        return serial_hex(self.serial)

    @property
    def names(self) -> tuple[str, ...]:
        """Every SAN an allowlist may name: URIs first, then DNS names."""
        return self.uris + self.dns_names

    def describe(self) -> str:
        """A short label for logs: the first SAN, else the CN, and the serial."""
        label = self.names[0] if self.names else f"CN={self.common_name}"
        return f"{label} (serial {self.serial_hex})"


def _parse_identity(pem: bytes) -> PeerIdentity:
    cert = parse_certificate_chain(pem, "peer certificate")[0]
    names = subject_names(cert)
    return PeerIdentity(
        common_name=names.common_name,
        dns_names=names.dns_names,
        uris=names.uris,
        serial=cert.serial_number,
        fingerprint_sha256=fingerprint_sha256(cert),
        pem=pem,
    )


class PeerIdentityReader:
    """Reads `PeerIdentity` from grpc auth contexts, parsing each distinct certificate once."""

    def __init__(self, cache_size: int = 4096) -> None:
        """`cache_size`: distinct client certificates kept parsed (one per acquirer key, roughly)."""
        self._parse = functools.lru_cache(maxsize=cache_size)(_parse_identity)

    def from_context(self, context: AuthContextSource) -> PeerIdentity | None:
        """The peer's identity, or None on a plaintext connection or one without a client certificate."""
        pems = context.auth_context().get(_PEM_KEY)
        if not pems:
            return None
        return self.from_pem(next(iter(pems)))

    def from_pem(self, pem: bytes) -> PeerIdentity:
        """The identity in one PEM certificate (CertificateError if it does not parse)."""
        return self._parse(pem)


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """Whether a peer may make a call, and why; `reason` is safe to log and to send back."""

    allowed: bool
    """True when the call may go on."""
    reason: str
    """Why it was allowed or denied, naming the identity."""
    acquirer_id: str | None = None
    """The acquirer the identity acts as, when known."""

    def require(self) -> None:
        """Raise AccessDenied when not allowed."""
        if not self.allowed:
            raise AccessDenied(self.reason)


_NO_IDENTITY = AccessDecision(False, "no client certificate (plaintext, or TLS without a client certificate)")


def _check_name(name: str) -> str:
    if "://" in name:
        return name
    labels = name.lower().split(".")
    if len(labels) < 2 or not all(label and label.replace("-", "").isalnum() for label in labels):
        raise SettingsError(
            f"allowlist[{name!r}]", "is neither a URI nor a DNS name", "use a SAN URI or DNS name"
        )
    return name.lower()


class Allowlist:
    """Which certificate identities (SAN URI or DNS name) may act as which acquirer."""

    def __init__(self, acquirers_by_identity: Mapping[str, str]) -> None:
        """`acquirers_by_identity`: SAN URI or DNS name -> the acquirer_id it may act as."""
        entries: dict[str, str] = {}
        for name, acquirer in acquirers_by_identity.items():
            if not acquirer:
                raise SettingsError(f"allowlist[{name!r}]", "has no acquirer id", "name the acquirer")
            key = _check_name(name)
            if entries.get(key, acquirer) != acquirer:
                raise SettingsError(f"allowlist[{name!r}]", "is listed twice", "keep one entry")
            entries[key] = acquirer
        self._acquirers = entries

    def __len__(self) -> int:
        return len(self._acquirers)

    def acquirer_for(self, identity: PeerIdentity) -> AccessDecision:
        """The one acquirer `identity` may act as (allowed), or why there is none (denied)."""
        found = {self._acquirers[n] for n in identity.names if n in self._acquirers}
        if not found:
            return AccessDecision(False, f"{identity.describe()} is not in the allowlist")
        if len(found) > 1:
            return AccessDecision(
                False, f"{identity.describe()} names several acquirers ({', '.join(sorted(found))})"
            )
        acquirer = found.pop()
        return AccessDecision(True, f"{identity.describe()} acts as {acquirer}", acquirer)

    def check(self, identity: PeerIdentity | None, acquirer_id: str) -> AccessDecision:
        """May `identity` send a request for `acquirer_id`? Denied without a certificate or on a mismatch."""
        if identity is None:
            return _NO_IDENTITY
        decision = self.acquirer_for(identity)
        if not decision.allowed or decision.acquirer_id == acquirer_id:
            return decision
        return AccessDecision(
            False,
            f"{identity.describe()} may act as {decision.acquirer_id}, not as {acquirer_id!r}",
            decision.acquirer_id,
        )
