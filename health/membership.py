"""The membership the gateway routes on: immutable snapshots and where they come from.

A `Membership` is a complete, frozen view of the etcd tree at one revision;
consumers never see a half-applied change. `MembershipSource` is what the
gateway depends on; `MembershipWatcher` (health.watcher) is the etcd-backed
implementation and `StaticMembership` the in-memory one for tests and for
running without etcd.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from health.errors import InvalidName, MalformedRecord

__all__ = [
    "PROTOCOLS",
    "GatewayInfo",
    "MemberInfo",
    "Membership",
    "MembershipListener",
    "MembershipSource",
    "Mode",
    "PoolView",
    "StaticMembership",
]

log = logging.getLogger(__name__)


class Mode(enum.StrEnum):
    """Operator override of the routing decision, stored at /authgw/mode."""

    AUTO = "auto"  # route to issuer pools; stand-in only when every pool fails
    FORCE_STANDIN = "force-standin"  # answer everything in stand-in (planned issuer outage)
    FORCE_ISSUER = "force-issuer"  # never stand in: decline with 91 rather than decide locally

    @classmethod
    def parse(cls, value: str) -> Mode:
        """Return the mode named `value`, or raise InvalidName naming it and the accepted values."""
        try:
            return cls(value.strip())
        except ValueError:
            accepted = ", ".join(m.value for m in cls)
            raise InvalidName(f"invalid mode {value!r}: expected one of {accepted}") from None


PROTOCOLS = ("grpc", "iso8583")  # what a member may speak

_EPOCH = "1970-01-01T00:00:00+00:00"  # registered_at of a record written without one (by hand)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _load_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRecord(f"{what}: not JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise MalformedRecord(f"{what}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _parse_time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedRecord(f"{what}: expected an ISO 8601 timestamp, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedRecord(f"{what}: {exc}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class MemberInfo:
    """One issuer host of a pool, as its health agent registered it."""

    address: str
    """host:port of the issuer host's gRPC endpoint."""
    zone: str = ""
    """Data centre or availability zone, for zone-aware routing; empty when unknown."""
    weight: int = 1
    """Relative share of the pool's traffic (0: registered but given no new traffic)."""
    version: str = ""
    """Software version label of the issuer host, as the operator gave it to the agent."""
    registered_at: datetime = field(default_factory=_utc_now)
    """When the agent (re-)registered the member: a recent value means a recent recovery."""
    protocol: str = "grpc"
    """How gateways talk to it: "grpc" (authgw.v1.IssuerHost) or "iso8583" (absent in a record: grpc)."""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise MalformedRecord(
                f"member protocol {self.protocol!r}: expected one of {', '.join(PROTOCOLS)}"
            )
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise MalformedRecord(f"member address {self.address!r}: expected host:port")
        if self.weight < 0:
            raise MalformedRecord(f"member weight {self.weight}: must be >= 0")

    def to_json(self) -> bytes:
        """Encode as the value of /authgw/pools/<pool>/members/<member>."""
        return json.dumps(
            {
                "address": self.address,
                "zone": self.zone,
                "weight": self.weight,
                "version": self.version,
                "registered_at": self.registered_at.isoformat(),
                "protocol": self.protocol,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> MemberInfo:
        """Decode a member value; raise MalformedRecord saying what is wrong."""
        obj = _load_object(raw, "member")
        address, weight = obj.get("address"), obj.get("weight", 1)
        if not isinstance(address, str):
            raise MalformedRecord(f"member: address must be a string, got {address!r}")
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise MalformedRecord(f"member: weight must be an integer, got {weight!r}")
        return cls(
            address=address,
            zone=str(obj.get("zone", "")),
            weight=weight,
            version=str(obj.get("version", "")),
            registered_at=_parse_time(obj.get("registered_at", _EPOCH), "member registered_at"),
            protocol=str(obj.get("protocol", "grpc")),
        )


@dataclass(frozen=True)
class GatewayInfo:
    """One live gateway instance of the fleet."""

    address: str
    """Where the instance serves the Authorization API."""
    started_at: datetime = field(default_factory=_utc_now)
    """When the instance registered (start of the process)."""

    def to_json(self) -> bytes:
        """Encode as the value of /authgw/gateways/<instance>."""
        payload = {"address": self.address, "started_at": self.started_at.isoformat()}
        return json.dumps(payload, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> GatewayInfo:
        """Decode a gateway value; raise MalformedRecord saying what is wrong."""
        obj = _load_object(raw, "gateway")
        address = obj.get("address")
        if not isinstance(address, str):
            raise MalformedRecord(f"gateway: address must be a string, got {address!r}")
        return cls(address=address, started_at=_parse_time(obj.get("started_at"), "gateway started_at"))


def _frozen_empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class PoolView:
    """The live members of one pool and whether an operator drained it."""

    members: Mapping[str, MemberInfo] = field(default_factory=_frozen_empty)
    """Member name -> registration; only members whose agent holds a live lease."""
    drained: bool = False
    """True when /authgw/pools/<pool>/drain exists: route no new traffic here."""


@dataclass(frozen=True)
class Membership:
    """An immutable view of pools, drain flags, mode and gateways at one etcd revision."""

    pools: Mapping[str, PoolView] = field(default_factory=_frozen_empty)
    """Pool name -> view; a pool appears once it has a member or a drain flag."""
    mode: Mode = Mode.AUTO
    """Operator routing override; AUTO when the key is absent or unreadable."""
    revision: int = 0
    """etcd revision this view reflects; 0 for a seed that never came from etcd."""
    etcd_connected: bool = False
    """False while etcd is unreachable: the view is the last one seen (or the seed)."""
    gateways: Mapping[str, GatewayInfo] = field(default_factory=_frozen_empty)
    """Instance name -> registration of every gateway holding a live lease."""

    def pool(self, name: str) -> PoolView:
        """Return the view of pool `name` (empty, not drained, when unknown)."""
        return self.pools.get(name, PoolView())

    def same_content(self, other: Membership) -> bool:
        """True when only the revision differs: routing would not change."""
        return replace(self, revision=other.revision) == other

    @classmethod
    def seed(
        cls,
        pools: Mapping[str, Mapping[str, MemberInfo | str]],
        *,
        drained: frozenset[str] = frozenset(),
        mode: Mode = Mode.AUTO,
    ) -> Membership:
        """Build a membership from static configuration (member values: MemberInfo or "host:port")."""
        views = {
            name: PoolView(
                members=MappingProxyType(
                    {
                        member: info if isinstance(info, MemberInfo) else MemberInfo(address=info)
                        for member, info in members.items()
                    }
                ),
                drained=name in drained,
            )
            for name, members in pools.items()
        }
        return cls(pools=MappingProxyType(views), mode=mode)


MembershipListener = Callable[[Membership], None]
"""Called on the event loop with each new snapshot; must not block."""


class MembershipSource(Protocol):
    """Where the gateway gets membership from: etcd in production, a fixed view in tests."""

    async def start(self) -> None:
        """Begin tracking; returns once a first snapshot (real or seed) is available."""

    async def close(self) -> None:
        """Stop tracking; safe to call twice."""

    def snapshot(self) -> Membership:
        """Return the latest snapshot (never blocks, never raises)."""

    def add_listener(self, listener: MembershipListener) -> Callable[[], None]:
        """Call `listener` after each content change; returns a function that removes it."""


class Listeners:
    """The set of on-change callbacks of a source; a failing callback is logged, not propagated."""

    def __init__(self) -> None:
        self._listeners: list[MembershipListener] = []

    def add(self, listener: MembershipListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def notify(self, membership: Membership) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(membership)
            except Exception:
                # A consumer's bug must not stop membership tracking for everyone else.
                log.exception("membership listener %r failed", listener)


class StaticMembership:
    """A MembershipSource holding a fixed view that a test (or static config) replaces at will."""

    def __init__(self, membership: Membership | None = None) -> None:
        self._membership = membership or Membership()
        self._listeners = Listeners()

    async def start(self) -> None:
        """Nothing to start: the view is already there."""

    async def close(self) -> None:
        """Nothing to release."""

    def snapshot(self) -> Membership:
        return self._membership

    def add_listener(self, listener: MembershipListener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def set(self, membership: Membership) -> None:
        """Replace the view and notify listeners if its content changed."""
        previous, self._membership = self._membership, membership
        if not previous.same_content(membership):
            self._listeners.notify(membership)
