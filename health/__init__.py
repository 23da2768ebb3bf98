"""etcd health leases: the agent beside each issuer host, and the membership the gateway reads.

The gateway uses `MembershipWatcher` (a `MembershipSource`) to follow pools,
drain flags and the routing mode, and `GatewayRegistration` to list itself in
the fleet; both take an `EtcdClient`. Errors are `HealthError` subclasses
(tree in health.errors).

etcd is mutual TLS with client-certificate authentication: an `EtcdClient` given a
`TransportSecurity` presents its certificate, whose CN is its etcd user, and each
user's roles (health.etcd_auth, drawn from health.keys) let it write only its own
keys: an agent its pool's members, a gateway its own registration, an operator the
drain and mode keys and its own audit records (health.admin, authgw.audit).
"""

from health.endpoints import Endpoint, parse_endpoints
from health.errors import (
    EtcdError,
    EtcdPermissionDenied,
    EtcdRequestFailed,
    EtcdUnavailable,
    HealthError,
    InvalidName,
    LeaseNotFound,
    MalformedRecord,
    RevisionCompacted,
)
from health.etcd import EtcdClient
from health.keys import DEFAULT_ROOT, KeyLayout
from health.lease import LeasedKey
from health.membership import (
    GatewayInfo,
    MemberInfo,
    Membership,
    MembershipListener,
    MembershipSource,
    Mode,
    PoolView,
    StaticMembership,
)
from health.registration import GatewayRegistration
from health.watcher import MembershipWatcher

__all__ = [
    "DEFAULT_ROOT",
    "Endpoint",
    "EtcdClient",
    "EtcdError",
    "EtcdPermissionDenied",
    "EtcdRequestFailed",
    "EtcdUnavailable",
    "GatewayInfo",
    "GatewayRegistration",
    "HealthError",
    "InvalidName",
    "KeyLayout",
    "LeaseNotFound",
    "LeasedKey",
    "MalformedRecord",
    "MemberInfo",
    "Membership",
    "MembershipListener",
    "MembershipSource",
    "MembershipWatcher",
    "Mode",
    "PoolView",
    "RevisionCompacted",
    "StaticMembership",
    "parse_endpoints",
]
