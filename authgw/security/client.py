"""Client side of mutual TLS: channel credentials, and rebuilding channels when our files change.

grpc Python has no dynamic client credentials: a channel keeps the certificate
it was built with. So an owner watches its files and rebuilds:

    material = await asyncio.to_thread(load_tls_files, files)     # errors name the file
    link = SwappableChannel("10.0.0.7:7001", material, server_name="primary.issuer.authgw.test")
    watcher = CertificateWatcher(material, link.rebuild)          # or your own callback
    await watcher.start()
    ...  stub = IssuerHostStub(link.channel)  # per call, or rebuild stubs in `on_swap`
    await watcher.close(); await link.close()

A rebuild builds the new channel first, swaps it in (new calls use it at once),
then closes the old one with a grace period, so calls in flight on it finish
instead of failing; calls still running when the grace ends are cancelled.

`server_name` is the name the server's certificate must carry. Give it whenever
you dial an IP address (the default check is against the address itself) and,
for issuer pools, always: with one CA for the fleet, an IP SAN alone would let a
host of another pool, or any server of the fleet, answer for this one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from authgw.security.errors import ClosedError
from authgw.security.tls import TlsMaterial
from authgw.security.watcher import CertificateWatcher  # here before; grpc-free, so it lives there

__all__ = [
    "CertificateWatcher",
    "SwappableChannel",
    "channel_credentials",
    "channel_options",
    "secure_channel",
]

log = logging.getLogger("authgw.security")

ChannelOptions = Sequence[tuple[str, Any]]


def channel_credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    """Our certificate and key, and the CA that must have signed the server's certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca_pem,
        private_key=material.key_pem,
        certificate_chain=material.cert_chain_pem,
    )


def channel_options(server_name: str | None, options: ChannelOptions = ()) -> list[tuple[str, Any]]:
    """`options` plus the server-name check when `server_name` is given."""
    merged = [opt for opt in options if opt[0] != "grpc.ssl_target_name_override"]
    if server_name is not None:
        merged.append(("grpc.ssl_target_name_override", server_name))
    return merged


def secure_channel(
    target: str, material: TlsMaterial, *, server_name: str | None = None, options: ChannelOptions = ()
) -> grpc.aio.Channel:
    """A mutual-TLS grpc.aio channel to `target` whose server must present `server_name` (if given)."""
    return grpc.aio.secure_channel(
        target, channel_credentials(material), options=channel_options(server_name, options)
    )


class SwappableChannel:
    """A mutual-TLS channel replaced in place when our certificate changes, letting calls in flight finish."""

    def __init__(
        self,
        target: str,
        material: TlsMaterial,
        *,
        server_name: str | None = None,
        options: ChannelOptions = (),
        close_grace_s: float = 5.0,
        on_swap: Callable[[grpc.aio.Channel], None] | None = None,
    ) -> None:
        """`on_swap(new_channel)` runs right after a swap, e.g. to rebuild the owner's stubs."""
        self._target = target
        self._server_name = server_name
        self._options = tuple(options)
        self._close_grace_s = close_grace_s
        self._on_swap = on_swap
        self._material = material
        self._channel = secure_channel(target, material, server_name=server_name, options=self._options)
        self._closed = False

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel new calls should use."""
        if self._closed:
            raise ClosedError(f"channel to {self._target} is closed")
        return self._channel

    @property
    def material(self) -> TlsMaterial:
        """The certificate material the current channel was built with."""
        return self._material

    async def rebuild(self, material: TlsMaterial) -> None:
        """Build a channel with `material`, swap it in, then close the old one within the grace period."""
        if self._closed:
            raise ClosedError(f"channel to {self._target} is closed")
        new = secure_channel(self._target, material, server_name=self._server_name, options=self._options)
        old, self._channel, self._material = self._channel, new, material
        if self._on_swap is not None:
            self._on_swap(new)
        await old.close(grace=self._close_grace_s)

    async def close(self, grace_s: float | None = None) -> None:
        """Close the current channel (waiting up to `grace_s` for calls in flight); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._channel.close(grace=grace_s)
