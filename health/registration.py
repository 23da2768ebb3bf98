"""A gateway's own presence in etcd: /authgw/gateways/<instance> on a lease of its own.

Operators (`authgw pools`) and the other gateways see the live fleet from
these keys. The gateway keeps serving whether or not etcd has its key: the
registration is a fleet view, not a permission to route.
"""

from __future__ import annotations

from datetime import UTC, datetime

from health.etcd import EtcdClient
from health.keys import DEFAULT_ROOT, KeyLayout
from health.lease import LeasedKey
from health.membership import GatewayInfo

__all__ = ["GatewayRegistration"]


class GatewayRegistration:
    """Holds /authgw/gateways/<instance> while the gateway runs.

    Args:
        client: etcd client (owned by the caller).
        instance: the gateway's instance name, unique in the fleet.
        address: host:port where this instance serves the Authorization API.
        ttl_s: lease TTL: how long a killed gateway stays listed.
        key_root: etcd key root (tests use their own).
    """

    def __init__(
        self,
        client: EtcdClient,
        instance: str,
        address: str,
        *,
        ttl_s: int = 3,
        key_root: str = DEFAULT_ROOT,
    ) -> None:
        self._info = GatewayInfo(address=address, started_at=datetime.now(UTC))
        self._lease = LeasedKey(
            client, KeyLayout(key_root).gateway(instance), self._info.to_json, ttl_s=ttl_s
        )

    @property
    def registered(self) -> bool:
        """The key is in etcd as far as this process knows."""
        return self._lease.held

    async def start(self) -> None:
        """Register in the background: returns at once, even if etcd is down."""
        await self._lease.start()
        self._lease.hold()

    async def wait_registered(self) -> None:
        """Return once the key is in etcd (wrap it in a timeout)."""
        await self._lease.wait_held()

    async def close(self) -> None:
        """Revoke the lease so the instance leaves the fleet view now; safe to call twice."""
        await self._lease.close()

    async def __aenter__(self) -> GatewayRegistration:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
