"""What the etcd client returns and takes: keys read, watch events, transaction operations."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["EventKind", "KeyValue", "RangeResult", "TxnDelete", "TxnOp", "TxnPut", "TxnResult", "WatchEvent"]


@dataclass(frozen=True)
class KeyValue:
    """One key as read from etcd."""

    key: str
    value: bytes
    mod_revision: int
    lease: int
    """ID of the lease the key is attached to; 0 for none."""


@dataclass(frozen=True)
class RangeResult:
    """The keys of one range read and the store revision it was served at."""

    kvs: tuple[KeyValue, ...]
    revision: int


class EventKind(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by a watch; `mod_revision` is the revision of the change."""

    kind: EventKind
    key: str
    value: bytes
    mod_revision: int


@dataclass(frozen=True)
class TxnPut:
    """Write `key` inside a transaction (attached to `lease` when non-zero)."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class TxnDelete:
    """Delete `key` inside a transaction."""

    key: str


TxnOp = TxnPut | TxnDelete


@dataclass(frozen=True)
class TxnResult:
    """What a transaction did."""

    applied: bool
    """False when a key that had to be absent existed: nothing was written."""
    revision: int
    """The store revision after the transaction (0 when not applied)."""
    deleted: tuple[int, ...]
    """For each TxnDelete, in order, how many keys it deleted (0 or 1); empty if not applied."""
