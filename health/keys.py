"""The etcd key layout under the authgw root, and folding its keys into a Membership.

    <root>/pools/<pool>/members/<member>  member JSON, on the agent's lease
    <root>/pools/<pool>/drain             present: route no new traffic to the pool
    <root>/mode                           auto | force-standin | force-issuer
    <root>/gateways/<instance>            gateway JSON, on the gateway's lease
    <root>-audit/<operator>/<record id>   one operator write (authgw.audit), beside the
                                          membership: gateways neither read nor watch it
    <root>/standin/policy                 the live stand-in policy (JSON: version, TOML text,
                                          who proposed and approved it); every gateway watches it
    <root>-policy/proposals/<operator>/<id>  a proposed policy, written only by its proposer
    <root>-policy/history/<version>       every approved version (10 digits), for history/rollback

The root is /authgw in production; tests give each case its own root. etcd's roles
(health.etcd_auth) are drawn from these prefixes: keep the two in step.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from health.errors import HealthError, InvalidName
from health.membership import GatewayInfo, MemberInfo, Membership, Mode, PoolView

__all__ = [
    "DEFAULT_ROOT",
    "DrainKey",
    "GatewayKey",
    "KeyLayout",
    "MemberKey",
    "ModeKey",
    "check_name",
]

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/authgw"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_name(kind: str, name: str) -> str:
    """Return `name` if it can be one path segment of a key, else raise InvalidName."""
    if not _NAME.fullmatch(name):
        raise InvalidName(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class MemberKey:
    pool: str
    member: str


@dataclass(frozen=True)
class DrainKey:
    pool: str


@dataclass(frozen=True)
class ModeKey:
    pass


@dataclass(frozen=True)
class GatewayKey:
    instance: str


KeyRef = MemberKey | DrainKey | ModeKey | GatewayKey


@dataclass(frozen=True)
class KeyLayout:
    """Where each authgw record lives in etcd."""

    root: str = DEFAULT_ROOT
    """Absolute key prefix without a trailing slash."""

    def __post_init__(self) -> None:
        if not self.root.startswith("/") or self.root.endswith("/") or "//" in self.root:
            raise InvalidName(f"invalid key root {self.root!r}: expected e.g. /authgw (no trailing slash)")

    @property
    def prefix(self) -> str:
        """Every authgw key starts with this; the watcher reads and watches it."""
        return f"{self.root}/"

    def member(self, pool: str, member: str) -> str:
        return f"{self.root}/pools/{check_name('pool', pool)}/members/{check_name('member', member)}"

    def drain(self, pool: str) -> str:
        return f"{self.root}/pools/{check_name('pool', pool)}/drain"

    def mode(self) -> str:
        return f"{self.root}/mode"

    def gateway(self, instance: str) -> str:
        return f"{self.root}/gateways/{check_name('gateway instance', instance)}"

    def members_prefix(self, pool: str) -> str:
        """Every member key of `pool` starts with this (what the pool's agent may write)."""
        return f"{self.root}/pools/{check_name('pool', pool)}/members/"

    @property
    def audit_prefix(self) -> str:
        """Where audit records live: a sibling of `prefix`, not under it."""
        return f"{self.root}-audit/"

    def audit_of(self, operator: str) -> str:
        """The records of one operator (the only ones its etcd role lets it write)."""
        return f"{self.audit_prefix}{check_name('operator', operator)}/"

    def audit(self, operator: str, record_id: str) -> str:
        return f"{self.audit_of(operator)}{check_name('audit record id', record_id)}"

    def standin_policy(self) -> str:
        """The live stand-in policy: read by every gateway, written by an approval."""
        return f"{self.root}/standin/policy"

    @property
    def policy_prefix(self) -> str:
        """Proposals and approved versions of the stand-in policy (operators only)."""
        return f"{self.root}-policy/"

    @property
    def policy_proposals_prefix(self) -> str:
        return f"{self.policy_prefix}proposals/"

    def policy_proposals_of(self, operator: str) -> str:
        """Where `operator` (and only it: its etcd role) writes its proposals."""
        return f"{self.policy_proposals_prefix}{check_name('operator', operator)}/"

    def policy_proposal(self, operator: str, proposal_id: str) -> str:
        return f"{self.policy_proposals_of(operator)}{check_name('proposal id', proposal_id)}"

    @property
    def policy_history_prefix(self) -> str:
        return f"{self.policy_prefix}history/"

    def policy_version(self, version: int) -> str:
        """An approved version; zero-padded so a prefix listing is in version order."""
        return f"{self.policy_history_prefix}{version:010d}"

    def parse(self, key: str) -> KeyRef | None:
        """Say which record `key` is, or None for a key outside the layout (ignored by readers)."""
        if not key.startswith(self.prefix):
            return None
        parts = key[len(self.prefix) :].split("/")
        match parts:
            case ["pools", pool, "members", member] if _NAME.fullmatch(pool) and _NAME.fullmatch(member):
                return MemberKey(pool, member)
            case ["pools", pool, "drain"] if _NAME.fullmatch(pool):
                return DrainKey(pool)
            case ["mode"]:
                return ModeKey()
            case ["gateways", instance] if _NAME.fullmatch(instance):
                return GatewayKey(instance)
            case _:
                return None

    def fold(self, entries: Mapping[str, bytes], *, revision: int, etcd_connected: bool) -> Membership:
        """Build the Membership that the raw `entries` (key -> value) describe.

        A malformed value is logged and skipped: one bad record must not hide
        the rest of the membership from the router.
        """
        members: dict[str, dict[str, MemberInfo]] = {}
        drained: set[str] = set()
        gateways: dict[str, GatewayInfo] = {}
        mode = Mode.AUTO
        for key, value in entries.items():
            ref = self.parse(key)
            try:
                match ref:
                    case MemberKey(pool, member):
                        members.setdefault(pool, {})[member] = MemberInfo.from_json(value)
                    case DrainKey(pool):
                        drained.add(pool)
                    case ModeKey():
                        mode = Mode.parse(value.decode(errors="replace"))
                    case GatewayKey(instance):
                        gateways[instance] = GatewayInfo.from_json(value)
                    case None:
                        pass
            except HealthError as exc:
                log.warning("ignoring malformed etcd record %s: %s", key, exc)
        pools = {
            name: PoolView(
                members=MappingProxyType(dict(sorted(members.get(name, {}).items()))),
                drained=name in drained,
            )
            for name in sorted(members.keys() | drained)
        }
        return Membership(
            pools=MappingProxyType(pools),
            mode=mode,
            revision=revision,
            etcd_connected=etcd_connected,
            gateways=MappingProxyType(dict(sorted(gateways.items()))),
        )
