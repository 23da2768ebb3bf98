"""Where etcd is: the --etcd flag's list of client URLs."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from health.errors import InvalidName

__all__ = ["DEFAULT_ETCD", "Endpoint", "parse_endpoints"]

DEFAULT_ETCD = "http://127.0.0.1:2379"


@dataclass(frozen=True)
class Endpoint:
    """One etcd client URL."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoints(spec: str) -> tuple[Endpoint, ...]:
    """Parse "http://h1:2379,h2:2379" into endpoints; raise InvalidName naming a bad entry."""
    endpoints = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        parts = urllib.parse.urlsplit(item if "://" in item else f"http://{item}")
        try:
            port = parts.port or 2379
        except ValueError:
            port = 0
        if parts.scheme != "http" or not parts.hostname or port == 0 or parts.path not in {"", "/"}:
            raise InvalidName(f"invalid etcd endpoint {item!r}: expected http://host:port")
        endpoints.append(Endpoint(parts.hostname, port))
    if not endpoints:
        raise InvalidName(f"no etcd endpoint in {spec!r}: expected http://host:port[,http://host:port...]")
    return tuple(endpoints)
