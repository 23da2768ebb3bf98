"""Where etcd is: the --etcd flag's list of client URLs.

`https://host:port` is etcd over TLS, `http://host:port` plaintext; a bare
`host:port` follows the client's transport security (TLS when it has a
certificate). The client refuses a scheme that contradicts its security, so a
config cannot believe it talks TLS to a plaintext etcd, or the other way round.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from health.errors import InvalidName

__all__ = ["DEFAULT_ETCD", "Endpoint", "check_schemes", "parse_endpoints"]

DEFAULT_ETCD = "127.0.0.1:2379"

_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class Endpoint:
    """One etcd client URL."""

    host: str
    port: int
    scheme: str = field(default="", compare=False)
    """"https", "http", or "" when the URL gave none (then the client's security decides)."""

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The endpoint as written (scheme included when one was given)."""
        return f"{self.scheme}://{self}" if self.scheme else str(self)


def parse_endpoints(spec: str) -> tuple[Endpoint, ...]:
    """Parse "https://h1:2379,h2:2379" into endpoints; raise InvalidName naming a bad entry."""
    endpoints = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        scheme = item.split("://", 1)[0].lower() if "://" in item else ""
        parts = urllib.parse.urlsplit(item if scheme else f"tcp://{item}")
        try:
            port = parts.port or 2379
        except ValueError:
            port = 0
        bad_scheme = scheme and scheme not in _SCHEMES
        if bad_scheme or not parts.hostname or port == 0 or parts.path not in {"", "/"}:
            raise InvalidName(
                f"invalid etcd endpoint {item!r}: expected https://host:port or http://host:port"
            )
        endpoints.append(Endpoint(parts.hostname, port, scheme))
    if not endpoints:
        raise InvalidName(f"no etcd endpoint in {spec!r}: expected https://host:port[,https://host:port...]")
    return tuple(endpoints)


def check_schemes(endpoints: Sequence[Endpoint], *, tls: bool) -> None:
    """Refuse an endpoint whose URL scheme says the opposite of the client's transport security."""
    for endpoint in endpoints:
        if tls and endpoint.scheme == "http":
            raise InvalidName(
                f"etcd endpoint {endpoint.url} is plaintext but a client certificate is given:"
                f" write https://{endpoint}"
            )
        if not tls and endpoint.scheme == "https":
            raise InvalidName(
                f"etcd endpoint {endpoint.url} is TLS but no client certificate is given: give the"
                " etcd client certificate, key and CA (or write http:// for a plaintext etcd)"
            )
