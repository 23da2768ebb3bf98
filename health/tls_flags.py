"""A link's TLS on the command line, the same way for every link: `--<link>-cert/-key/-ca`.

    --etcd-cert FILE          our client certificate (its CN is our etcd user)
    --etcd-key FILE           its private key
    --etcd-ca FILE            the CA that signed the server's certificate
    --etcd-server-name NAME   the name the server's certificate must carry (default: the host dialled)
    --etcd-insecure           plaintext instead: development only, logged every minute

(`--probe-...` for the issuer host the health agent probes.) Mutual TLS is the
default: without the three files and without `--<link>-insecure` the command
stops with an error naming the missing flag. Defaults may come from the
environment (`$AUTHGW_ETCD_CERT`, `$AUTHGW_ETCD_KEY`, `$AUTHGW_ETCD_CA`), so an
operator sets their own certificate once per shell.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from authgw.security import TlsFiles, TransportSecurity
from health.errors import InvalidName

__all__ = ["add_tls_flags", "server_name", "transport_security"]

_FILES = ("cert", "key", "ca")
_MEANING = {
    "cert": "our client certificate (PEM)",
    "key": "its private key (PEM)",
    "ca": "CA certificate(s) that sign the server's certificate (PEM)",
}


def _dest(link: str, what: str) -> str:
    return f"{link}_{what}".replace("-", "_")


def add_tls_flags(parser: argparse.ArgumentParser, link: str, peer: str, *, env: str | None = None) -> None:
    """Add --<link>-cert/-key/-ca/-server-name/-insecure; `env` prefixes the environment defaults."""
    group = parser.add_argument_group(f"TLS to {peer}")
    for what in _FILES:
        default = os.environ.get(f"{env}_{what.upper()}") if env else None
        source = f" (default: ${env}_{what.upper()})" if env else ""
        group.add_argument(f"--{link}-{what}", type=Path, default=default, help=f"{_MEANING[what]}{source}")
    group.add_argument(
        f"--{link}-server-name",
        default=None,
        help=f"name {peer}'s certificate must carry (default: the host dialled)",
    )
    group.add_argument(
        f"--{link}-insecure",
        action="store_true",
        help=f"talk to {peer} in plaintext (development only; logged as a warning every minute)",
    )


def transport_security(args: argparse.Namespace, link: str) -> TransportSecurity:
    """The link's security from the parsed flags; InvalidName naming the flag that is missing or extra."""
    files = {what: getattr(args, _dest(link, what)) for what in _FILES}
    given = [f"--{link}-{what}" for what, value in files.items() if value is not None]
    if getattr(args, _dest(link, "insecure")):
        if given:
            raise InvalidName(f"--{link}-insecure and {', '.join(given)} given: choose TLS or plaintext")
        return TransportSecurity.plaintext()
    for what, value in files.items():
        if value is None:
            raise InvalidName(
                f"--{link}-{what} missing: this link is mutual TLS; give --{link}-cert, --{link}-key"
                f" and --{link}-ca, or --{link}-insecure for plaintext (development only)"
            )
    return TransportSecurity.mutual_tls(TlsFiles(cert=files["cert"], key=files["key"], ca=files["ca"]))


def server_name(args: argparse.Namespace, link: str) -> str | None:
    """The --<link>-server-name flag (None: check the host dialled)."""
    name: str | None = getattr(args, _dest(link, "server_name"))
    return name
