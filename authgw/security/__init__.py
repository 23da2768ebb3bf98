"""Transport security shared by every authgw process: mutual TLS, identities, revocation.

One concept per module:

| module      | what it gives                                                                  |
|-------------|--------------------------------------------------------------------------------|
| `errors`    | the error tree (root `SecurityError`)                                          |
| `tls`       | `TlsFiles`, `load_tls_files`, `TransportSecurity` (plaintext by choice), `PlaintextWarning` |
| `server`    | `ServerCertificateReloader`: grpc.aio server credentials, hot reload from disk |
| `client`    | channel credentials, `SwappableChannel` (grpc)                                 |
| `identity`  | `PeerIdentity` from a servicer context, `Allowlist` identity -> acquirer       |
| `denylist`  | `DenyList`: revoked serials and fingerprints, reloaded on change               |
| `expiry`    | days until a certificate expires                                               |
| `redis_tls` | redis-py keyword arguments for `rediss://`                                     |
| `devca`     | dev CA and certificates: a tool (`python -m authgw.security.devca`), not imported here |
| `watcher`   | `FileWatcher`, `CertificateWatcher` (rebuild a client when our files change)   |

It imports nothing from gateway, standin, health or chaos. grpc is imported only when a
name of `client` or `server` is first used, so a package without gRPC (stand-in) can use
the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from authgw.security.denylist import DenyEntries, DenyList, parse_deny_list
from authgw.security.errors import (
    AccessDenied,
    CertificateError,
    ClosedError,
    DenyListError,
    SecurityError,
    SettingsError,
)
from authgw.security.expiry import certificate_days_left, check_certificate_expiry, days_to_expiry
from authgw.security.filestamp import FileStamp
from authgw.security.identity import AccessDecision, Allowlist, PeerIdentity, PeerIdentityReader
from authgw.security.redis_tls import RedisTlsKwargs, redis_tls_kwargs
from authgw.security.tls import PlaintextWarning, TlsFiles, TlsMaterial, TransportSecurity, load_tls_files
from authgw.security.watcher import CertificateWatcher, FileWatcher

if TYPE_CHECKING:
    from authgw.security.client import SwappableChannel, channel_credentials, channel_options, secure_channel
    from authgw.security.server import ServerCertificateReloader

_GRPC_NAMES = {
    "ServerCertificateReloader": "authgw.security.server",
    "SwappableChannel": "authgw.security.client",
    "channel_credentials": "authgw.security.client",
    "channel_options": "authgw.security.client",
    "secure_channel": "authgw.security.client",
}

__all__ = [
    "AccessDecision",
    "AccessDenied",
    "Allowlist",
    "CertificateError",
    "CertificateWatcher",
    "ClosedError",
    "DenyEntries",
    "DenyList",
    "DenyListError",
    "FileStamp",
    "FileWatcher",
    "PeerIdentity",
    "PeerIdentityReader",
    "PlaintextWarning",
    "RedisTlsKwargs",
    "SecurityError",
    "ServerCertificateReloader",
    "SettingsError",
    "SwappableChannel",
    "TlsFiles",
    "TlsMaterial",
    "TransportSecurity",
    "certificate_days_left",
    "channel_credentials",
    "channel_options",
    "check_certificate_expiry",
    "days_to_expiry",
    "load_tls_files",
    "parse_deny_list",
    "redis_tls_kwargs",
    "secure_channel",
]


def __getattr__(name: str) -> Any:
    """The grpc-based names, imported on first use (PEP 562)."""
    module = _GRPC_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
