"""The live stand-in policy's records in etcd: what the live key, its history and a proposal hold (JSON).

Read by every gateway (policy_watch.py: the live key) and by the operator commands
(policy_store.py); parse errors are PolicyStoreError naming the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from gateway.errors import GatewayError

__all__ = ["PolicyRecord", "PolicyStoreError", "Proposal", "digest", "parse_json", "parse_record"]


class PolicyStoreError(GatewayError):
    """An operator's policy step refused (self-approval, stale proposal, unknown id, invalid policy)."""


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class PolicyRecord:
    """An approved version, as the live key and its history entry hold it."""

    version: int
    policy: str
    """The TOML text ([policy] table) exactly as proposed."""
    sha256: str
    proposal: str
    proposed_by: str
    approved_by: str
    approved_at: str
    rollback_of: int | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


@dataclass(frozen=True)
class Proposal:
    """A policy text waiting for a second operator."""

    proposal_id: str
    policy: str
    sha256: str
    proposed_by: str
    proposed_at: str
    base_version: int
    """The live version when proposed (what its diff was read against)."""
    rollback_of: int | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def parse_record(value: bytes, where: str) -> PolicyRecord:
    """A PolicyRecord from etcd; PolicyStoreError naming `where` when it is not one."""
    raw = parse_json(value, where)
    try:
        record = PolicyRecord(**raw)
    except TypeError as exc:
        raise PolicyStoreError(f"{where}: not a policy record ({exc})") from exc
    if not isinstance(record.version, int) or record.version < 1 or not isinstance(record.policy, str):
        raise PolicyStoreError(f"{where}: version must be an integer >= 1 and policy a TOML text")
    return record


def parse_json(value: bytes, where: str) -> dict[str, Any]:
    try:
        raw = json.loads(value)
    except ValueError as exc:
        raise PolicyStoreError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise PolicyStoreError(f"{where}: expected a JSON object")
    return raw
