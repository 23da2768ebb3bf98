"""`[iso8583_listen]`: the gateway's ISO 8583 acquirer listener, beside its gRPC port.

    [iso8583_listen]
    listen = "0.0.0.0:8583"          # host:port; the section's presence turns the listener on
    # TLS: by default the same certificate, key, acquirers' CA and deny list as [tls] (mutual
    # TLS, the client certificate's identity must act as field 32); or its own files:
    # cert = "certs/iso-gateway.pem"
    # key = "certs/iso-gateway.key"
    # ca = "certs/iso-acquirers-ca.pem"
    # insecure = true                # plaintext: development only, warned at start and every minute
    length_header = "binary2"        # 2-byte big-endian length (or "ascii4": 4 ASCII digits)
    tpdu = false                     # frames carry a 5-byte TPDU after the header (NACChannel)
    bitmap = "ascii-hex"             # "ascii-hex" (16 characters per bitmap) or "binary" (8 bytes)
    max_frame_bytes = 4096           # a larger length header closes that connection (only it)
    idle_timeout = "120s"            # no frame for this long, nothing in flight: connection closed
    body_timeout = "5s"              # a frame's bytes must follow its header within this
    write_timeout = "5s"             # a peer that reads none of our replies for this long is gone
    handshake_timeout = "5s"         # TLS handshake of a new connection
    max_in_flight = 256              # requests handled at once per connection (more wait unread)
    max_connections = 256            # connections at once; more are closed at accept, logged

Without the section there is no listener. Every error names the file, the key and the fix.

Issuer hosts that speak ISO 8583 are pool members with `protocol = "iso8583"`; how the
gateway talks to them is the pool's `[pools.iso8583]` table (all optional):

    [[pools]]
    name = "primary"
    members = [{ name = "a1", address = "10.0.0.1:8583", protocol = "iso8583" }]
    [pools.iso8583]
    connections = 2                  # persistent connections per host, requests multiplexed on them
    connect_timeout = "1s"
    echo_interval = "5s"             # an idle connection is probed with 0800/301 after this long
    echo_timeout = "2s"              # an unanswered echo: connection closed, member ejected, reconnect
    reconnect_backoff = "100ms"      # first wait before reconnecting, doubled per failure ...
    reconnect_backoff_max = "2s"     # ... up to this
    messages = "authorization"       # 0100 / 0120 (dual message); "financial": 0200 / 0220
    length_header = "binary2"        # as [iso8583_listen]; no TPDU on issuer links
    bitmap = "ascii-hex"
    max_frame_bytes = 4096

TLS is `[issuer_tls]` (our client certificate, the issuers' CA) and the pool's `server_name`,
as for gRPC members; `[issuer_tls] insecure = true` makes every issuer link plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from authgw.config import Section
from authgw.iso8583 import BitmapEncoding, EchoConfig, Framing, LengthHeader
from authgw.iso8583 import ConfigError as WireConfigError
from authgw.security import TransportSecurity
from authgw.security.config import TLS_KEYS, transport_security
from gateway.edges.iso8583_issuer_link import LinkSettings

__all__ = ["Iso8583ListenConfig", "iso8583_listen_config", "issuer_link_settings"]

_S = timedelta(seconds=1)
_MS = timedelta(milliseconds=1)
_KEYS = {
    "listen",
    "length_header",
    "tpdu",
    "bitmap",
    "max_frame_bytes",
    "idle_timeout",
    "body_timeout",
    "write_timeout",
    "handshake_timeout",
    "max_in_flight",
    "max_connections",
}


@dataclass(frozen=True, slots=True)
class Iso8583ListenConfig:
    """The ISO 8583 acquirer listener (see the module docstring for each key)."""

    listen: str
    security: TransportSecurity
    """Its own TLS, or [tls]'s (then `own_tls` is False and the deny list of [tls] applies too)."""
    own_tls: bool = False
    framing: Framing = field(default_factory=Framing)
    bitmap: BitmapEncoding = BitmapEncoding.ASCII_HEX
    idle_timeout: timedelta = 120 * _S
    write_timeout: timedelta = 5 * _S
    handshake_timeout: timedelta = 5 * _S
    max_in_flight: int = 256
    max_connections: int = 256

    @property
    def idle_timeout_s(self) -> float:
        return self.idle_timeout / _S

    @property
    def write_timeout_s(self) -> float:
        return self.write_timeout / _S

    @property
    def handshake_timeout_s(self) -> float:
        return self.handshake_timeout / _S


def _choice(s: Section, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = s.string(name, default)
    if value not in choices:
        s.fail(name, f"must be one of {', '.join(choices)}, got {value!r}", f"write {choices[0]!r}")
    return value


def _framing(s: Section) -> Framing:
    header = LengthHeader(_choice(s, "length_header", "binary2", tuple(h.value for h in LengthHeader)))
    try:
        return Framing(
            header=header,
            tpdu=s.boolean("tpdu", False),
            max_frame_bytes=s.integer("max_frame_bytes", 4096, minimum=1),
            body_timeout_s=s.duration("body_timeout", 5 * _S, minimum=_MS, maximum=60 * _S) / _S,
        )
    except WireConfigError as exc:
        s.fail(exc.key, exc.problem, exc.fix)


def iso8583_listen_config(s: Section, server: TransportSecurity) -> Iso8583ListenConfig | None:
    """`[iso8583_listen]` (None when absent); `server`: [tls]'s security, used unless it has its own."""
    if not s.raw:
        return None
    s.check_known(_KEYS | set(TLS_KEYS))
    listen = s.string("listen", "")
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        s.fail("listen", f"must be 'host:port', got {listen!r}", "write e.g. 0.0.0.0:8583")
    own_tls = any(s.has(key) for key in TLS_KEYS)
    return Iso8583ListenConfig(
        listen=listen,
        security=transport_security(s) if own_tls else server,
        own_tls=own_tls,
        framing=_framing(s),
        bitmap=BitmapEncoding(_choice(s, "bitmap", "ascii-hex", tuple(b.value for b in BitmapEncoding))),
        idle_timeout=s.duration("idle_timeout", 120 * _S, minimum=_S),
        write_timeout=s.duration("write_timeout", 5 * _S, minimum=_MS),
        handshake_timeout=s.duration("handshake_timeout", 5 * _S, minimum=_MS),
        max_in_flight=s.integer("max_in_flight", 256, minimum=1, maximum=10_000),
        max_connections=s.integer("max_connections", 256, minimum=1, maximum=100_000),
    )


_ISSUER_KEYS = {
    "connections", "connect_timeout", "echo_interval", "echo_timeout", "reconnect_backoff",
    "reconnect_backoff_max", "messages", "length_header", "bitmap", "max_frame_bytes",
}  # fmt: skip


def issuer_link_settings(s: Section, server_name: str) -> LinkSettings:
    """A pool's `[pools.iso8583]` (defaults when absent): how its ISO 8583 members are reached."""
    s.check_known(_ISSUER_KEYS)
    d = LinkSettings()
    try:
        echo = EchoConfig(
            idle_s=s.duration("echo_interval", d.echo.idle_s * _S, minimum=100 * _MS) / _S,
            timeout_s=s.duration("echo_timeout", d.echo.timeout_s * _S, minimum=10 * _MS) / _S,
        )
        framing = Framing(
            header=LengthHeader(_choice(s, "length_header", "binary2", tuple(h.value for h in LengthHeader))),
            max_frame_bytes=s.integer("max_frame_bytes", 4096, minimum=1),
        )
    except WireConfigError as exc:
        s.fail(exc.key, exc.problem, exc.fix)
    backoff = s.duration("reconnect_backoff", d.backoff_initial_s * _S, minimum=_MS)
    return LinkSettings(
        connections=s.integer("connections", d.connections, minimum=1, maximum=64),
        connect_timeout_s=s.duration("connect_timeout", d.connect_timeout_s * _S, minimum=_MS) / _S,
        echo=echo,
        backoff_initial_s=backoff / _S,
        backoff_max_s=s.duration("reconnect_backoff_max", d.backoff_max_s * _S, minimum=backoff) / _S,
        financial=_choice(s, "messages", "authorization", ("authorization", "financial")) == "financial",
        framing=framing,
        bitmap=BitmapEncoding(_choice(s, "bitmap", "ascii-hex", tuple(b.value for b in BitmapEncoding))),
        server_name=server_name,
    )
