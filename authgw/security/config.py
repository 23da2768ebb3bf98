"""A link's transport security from its config section, the same way in every file.

    [tls]                          # or [issuer_tls], [etcd], a stand-in file's [redis], ...
    cert = "certs/gateway.pem"     # our certificate chain (PEM, leaf first)
    key = "certs/gateway.key"      # its private key (mode 0600)
    ca = "certs/ca.pem"            # the PEER's CA: clients' on a server, servers' on a client
    # insecure = true              # plaintext instead: development only, logged every minute

Relative paths are relative to the config file. Nothing else turns TLS off: a
section without files and without `insecure = true` is an error naming the key.
"""

from __future__ import annotations

from authgw.config import Section
from authgw.security.tls import TlsFiles, TransportSecurity

__all__ = ["TLS_KEYS", "transport_security"]

TLS_KEYS = ("cert", "key", "ca", "insecure")
"""The keys `transport_security` reads (a caller's check_known adds its own)."""


def transport_security(s: Section) -> TransportSecurity:
    """The link's TransportSecurity (ConfigError naming the missing key, or both given)."""
    insecure = s.boolean("insecure", False)
    cert, key, ca = s.path("cert"), s.path("key"), s.path("ca")
    given = [name for name, value in (("cert", cert), ("key", key), ("ca", ca)) if value is not None]
    if insecure:
        if given:
            s.fail("insecure", f"is true but {', '.join(given)} given too", "remove insecure, or the files")
        return TransportSecurity.plaintext()
    for name, value in (("cert", cert), ("key", key), ("ca", ca)):
        if value is None:
            s.fail(
                name,
                "missing: this link is mutual TLS",
                f"give the {name} file, or set insecure = true (plaintext, development only)",
            )
    assert cert is not None and key is not None and ca is not None
    return TransportSecurity.mutual_tls(TlsFiles(cert=cert, key=key, ca=ca))
