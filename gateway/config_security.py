"""The gateway config's security sections: who may call, how each link is protected.

    [tls]                               # the Authorization service (acquirers -> gateway)
    cert = "certs/gateway.pem"
    key = "certs/gateway.key"
    ca = "certs/acquirers-ca.pem"        # client certificates must chain to it
    deny_list = "certs/denied.txt"       # optional: revoked serials / SHA-256 fingerprints, reloaded

    [[acquirers]]                       # who may call, and as which acquirer (ISO 8583 field 32)
    id = "1001"
    identities = ["spiffe://bank.example/acquirer/1001"]   # SAN URIs or DNS names of its certificates

    [issuer_tls]                        # gateway -> issuer hosts (our client certificate, their CA)
    cert = "certs/gateway-client.pem"
    key = "certs/gateway-client.key"
    ca = "certs/issuers-ca.pem"

and, in `[etcd]`, the same cert / key / ca for the etcd client (its certificate's CN is
its etcd user). Every link is mutual TLS unless its section says `insecure = true`
(plaintext, development only, logged at start and every minute).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from authgw.config import Section
from authgw.security import TransportSecurity
from authgw.security.config import TLS_KEYS, transport_security
from health import InvalidName, parse_endpoints
from health.endpoints import check_schemes

__all__ = ["SecurityConfig", "acquirers_from", "security_config", "server_security"]

_ACQUIRER_ID = r"[0-9]{1,11}"


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """Who may call the gateway and how each of its links is protected."""

    server: TransportSecurity
    """The Authorization service: mutual TLS requiring acquirers' client certificates (or plaintext)."""
    deny_list: Path | None = None
    """Revoked client certificates (serials or SHA-256 fingerprints), checked per call; None: none."""
    acquirers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Certificate identity (SAN URI or DNS name) -> the acquirer_id its holder may use."""
    issuers: TransportSecurity = field(default_factory=TransportSecurity.plaintext)
    """Gateway -> issuer hosts."""
    etcd: TransportSecurity = field(default_factory=TransportSecurity.plaintext)
    """Gateway -> etcd (the certificate's CN is the etcd user)."""


def server_security(s: Section) -> tuple[TransportSecurity, Path | None]:
    """`[tls]`: the service's own TLS and its deny list."""
    s.check_known([*TLS_KEYS, "deny_list"])
    security = transport_security(s)
    deny = s.path("deny_list")
    if deny is not None and security.insecure:
        s.fail("deny_list", "needs client certificates", "remove it, or turn TLS on")
    return security, deny


def acquirers_from(root: Section) -> Mapping[str, str]:
    """`[[acquirers]]`: identity -> acquirer id (an identity may act as one acquirer only)."""
    out: dict[str, str] = {}
    for a in root.tables("acquirers"):
        a.check_known(["id", "identities"])
        acquirer = a.string("id", "", pattern=_ACQUIRER_ID, fix="1-11 digits, as ISO 8583 field 32")
        identities = a.strings("identities", ())
        if not identities:
            a.fail("identities", "empty", "list its certificates' SAN URIs or DNS names")
        for identity in identities:  # URIs compare exactly (a SPIFFE path is case-sensitive)
            key = identity if "://" in identity else identity.lower()  # DNS names do not
            if out.get(key, acquirer) != acquirer:
                a.fail("identities", f"{identity!r} already acts as acquirer {out[key]}", "keep one")
            out[key] = acquirer
    return MappingProxyType(out)


def security_config(root: Section, etcd: Section | None) -> SecurityConfig:
    """Every security section of a gateway config; `etcd`: its [etcd] when it has endpoints."""
    server, deny_list = server_security(root.table("tls"))
    issuer_tls = root.table("issuer_tls")
    issuer_tls.check_known(TLS_KEYS)
    return SecurityConfig(
        server=server,
        deny_list=deny_list,
        acquirers=acquirers_from(root),
        issuers=transport_security(issuer_tls),
        etcd=TransportSecurity.plaintext() if etcd is None else _etcd_security(etcd),
    )


def _etcd_security(etcd: Section) -> TransportSecurity:
    """[etcd]'s TLS, and endpoints whose scheme agrees with it (https:// with certificates)."""
    security = transport_security(etcd)
    try:
        check_schemes(parse_endpoints(",".join(etcd.strings("endpoints", ()))), tls=not security.insecure)
    except InvalidName as exc:
        etcd.fail("endpoints", str(exc), "https://host:port with cert/key/ca, http:// only with insecure")
    return security
