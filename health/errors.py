"""Errors of the health package.

Expected failures are subclasses of one root; anything else is a bug::

    HealthError                 root: catch this to handle any health failure
    ├── EtcdError               an etcd request did not do what was asked
    │   ├── EtcdUnavailable     no endpoint answered in time (down, unreachable, no leader)
    │   ├── RevisionCompacted   a watch asked for history etcd has already compacted
    │   ├── LeaseNotFound       the lease expired or was revoked
    │   └── EtcdRequestFailed   etcd answered with an error for this request
    │       └── EtcdPermissionDenied  etcd's auth refused our user (certificate CN) this key
    ├── MalformedRecord         a value under /authgw/ is not what the key layout says
    └── InvalidName             a pool, member, instance or mode name is not acceptable

aetcd and gRPC errors are translated into this tree in one place,
`health.etcd`; no other module sees them.
"""

from __future__ import annotations

__all__ = [
    "EtcdError",
    "EtcdPermissionDenied",
    "EtcdRequestFailed",
    "EtcdUnavailable",
    "HealthError",
    "InvalidName",
    "LeaseNotFound",
    "MalformedRecord",
    "RevisionCompacted",
]


class HealthError(Exception):
    """Root of every expected error raised by the health package."""


class EtcdError(HealthError):
    """An etcd request failed."""


class EtcdUnavailable(EtcdError):
    """No etcd endpoint answered in time: retry later, keep the last known state."""


class RevisionCompacted(EtcdError):
    """The requested watch revision is older than etcd's compaction point."""

    def __init__(self, compacted_revision: int) -> None:
        super().__init__(f"revision compacted below {compacted_revision}")
        self.compacted_revision = compacted_revision


class LeaseNotFound(EtcdError):
    """The lease no longer exists (expired or revoked)."""


class EtcdRequestFailed(EtcdError):
    """etcd rejected the request (a bug or a misconfiguration, not an outage)."""


class EtcdPermissionDenied(EtcdRequestFailed):
    """etcd's authentication refused the request: our user's roles do not cover the key.

    The message names the request (and so the key) and the etcd user: with
    `--client-cert-auth`, the CN of our client certificate.
    """


class MalformedRecord(HealthError):
    """A key or value under the authgw prefix does not follow the key layout."""


class InvalidName(HealthError, ValueError):
    """A name given by an operator or a caller is not acceptable."""
