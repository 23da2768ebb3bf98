"""The harness's certificates: one development CA for a local fleet, and the config that uses it.

`DevPki(directory)` writes (once) the CA and every leaf `authgw.security.devca` knows,
and hands out what each process of a topology needs:

    pki.gateway_sections()       [tls], [[acquirers]], [issuer_tls] of a gateway config
    pki.issuer_sim_args(pool)    issuer simulator flags: its server certificate, the CA of its callers
    pki.acquirer_credentials()   grpc channel credentials of an acquirer (ACQ001 = acquirer 1001)
    pki.files(name)              TlsFiles of any leaf (cert, key, fleet CA)

`PLAINTEXT` is the explicit opposite, for tests of one piece that do not exercise TLS:
every link `insecure = true` (the gateway logs a warning for each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from authgw.security import TlsFiles
from authgw.security.devca import generate

__all__ = ["ACQUIRERS", "PLAINTEXT", "PLAINTEXT_TOML", "DevPki", "plaintext_sections"]

ACQUIRERS = {"1001": "ACQ001", "1002": "ACQ002"}
"""acquirer_id -> the devca leaf whose certificate it presents."""

GATEWAY_SERVER_NAME = "gateway.authgw.test"
"""A name every dev gateway's certificate carries: what a channel to several gateways checks."""

PLAINTEXT: dict[str, dict[str, Any]] = {"tls": {"insecure": True}, "issuer_tls": {"insecure": True}}
"""A gateway config's links in plaintext (add `"etcd": {"insecure": True, ...}` when it has etcd)."""
PLAINTEXT_TOML = "[tls]\ninsecure = true\n[issuer_tls]\ninsecure = true\n"
"""PLAINTEXT written as TOML, for tests that write config files by hand."""

ISSUER_SERVER_NAME = "{pool}.issuer.authgw.test"
"""The name an issuer pool's certificate carries (devca: primary and secondary)."""


def plaintext_sections(*, etcd_endpoints: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """PLAINTEXT, with an `[etcd]` section when there are endpoints (a fresh copy to edit)."""
    sections = {name: dict(values) for name, values in PLAINTEXT.items()}
    if etcd_endpoints:
        sections["etcd"] = {"endpoints": list(etcd_endpoints), "insecure": True}
    return sections


class DevPki:
    """The development CA and certificates in one directory (generated at first use, then kept)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        generate(directory)
        self.ca = directory / "ca.crt"

    def files(self, name: str) -> TlsFiles:
        """A leaf's certificate and key, and the fleet CA (the peer's CA for every link here)."""
        return TlsFiles(cert=self.directory / f"{name}.crt", key=self.directory / f"{name}.key", ca=self.ca)

    def section(self, name: str) -> dict[str, str]:
        """A config section's cert / key / ca for leaf `name`."""
        f = self.files(name)
        return {"cert": str(f.cert), "key": str(f.key), "ca": str(f.ca)}

    def gateway_sections(
        self, *, etcd_endpoints: list[str] | None = None, instance: str = "gw-1"
    ) -> dict[str, Any]:
        """A gateway's [tls], [[acquirers]], [issuer_tls] (and [etcd] with its instance's certificate:
        its CN is the etcd user allowed to write that instance's registration only)."""
        sections: dict[str, Any] = {
            "tls": self.section("gateway"),
            "acquirers": [
                {"id": acquirer, "identities": [f"spiffe://authgw.test/acquirer/{leaf}"]}
                for acquirer, leaf in ACQUIRERS.items()
            ],
            "issuer_tls": self.section("gateway-client"),
        }
        if etcd_endpoints:
            sections["etcd"] = {
                "endpoints": list(etcd_endpoints),
                **self.section(f"gateway-client-{instance}"),
            }
        return sections

    def issuer_sim_args(self, pool: str) -> list[str]:
        """Flags of an issuer simulator serving `pool` (devca has primary and secondary)."""
        f = self.files(f"issuer-{pool}")
        return ["--tls-cert", str(f.cert), "--tls-key", str(f.key), "--tls-ca", str(f.ca)]

    def acquirer_files(self, acquirer_id: str = "1001") -> TlsFiles:
        return self.files(f"acquirer-{ACQUIRERS[acquirer_id]}")

    def acquirer_credentials(self, acquirer_id: str = "1001") -> grpc.ChannelCredentials:
        """What an acquirer's client presents to the gateway (and the CA it checks the gateway with)."""
        f = self.acquirer_files(acquirer_id)
        return grpc.ssl_channel_credentials(
            root_certificates=f.ca.read_bytes(),
            private_key=f.key.read_bytes(),
            certificate_chain=f.cert.read_bytes(),
        )
