"""The gateway's link to etcd: live membership into the router, mode, and its own registration.

etcd is a hint, not the truth: the watcher keeps the last membership it saw
when etcd goes away (and starts from the config's static members when etcd is
unreachable at a cold start), so the gateway never concludes that every pool is
dead because etcd is silent.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections import Counter
from collections.abc import Callable

from opentelemetry.trace import Tracer

from gateway.config import GatewayConfig
from gateway.policy_watch import PolicyWatch
from gateway.pool import MemberSpec
from gateway.router import PoolSpec, Router
from health import (
    EtcdClient,
    GatewayRegistration,
    MemberInfo,
    Membership,
    MembershipWatcher,
    Mode,
    parse_endpoints,
)
from health.keys import KeyLayout
from standin.policy_live import LivePolicy

__all__ = ["MemberFilter", "MembershipLink", "pool_specs"]

log = logging.getLogger("authgw.membership")


class MemberFilter:
    """Only the pools the config names, and in each only the members at an allowed address.

    Anyone who can write to etcd could register a "member": the gateway would send it card
    numbers and take its approvals. A pool not in the config, or a member outside the pool's
    `allowed` patterns (fnmatch over host:port; by default the config's own member
    addresses), is ignored, logged once and counted in `rejected` (pool, reason). Under TLS
    a member at an allowed address must still present the pool's certificate (server_name).
    """

    def __init__(self, cfg: GatewayConfig) -> None:
        self._allowed = {p.name: p.allowed for p in cfg.pools}
        self.pools = frozenset(self._allowed)
        self.rejected: Counter[tuple[str, str]] = Counter()  # (pool, reason) -> members ignored
        self._logged: set[tuple[str, str, str]] = set()

    def admits(self, pool: str, member: str, address: str) -> bool:
        patterns = self._allowed.get(pool)
        if patterns is None:
            return self._reject(pool, member, address, "unknown_pool")
        if not any(fnmatch.fnmatchcase(address, pattern) for pattern in patterns):
            return self._reject(pool, member, address, "address_not_allowed")
        return True

    def _reject(self, pool: str, member: str, address: str, reason: str) -> bool:
        self.rejected[pool, reason] += 1
        if (pool, member, address) not in self._logged:
            self._logged.add((pool, member, address))
            log.warning("ignoring member %s/%s at %s: %s", pool, member, address, reason.replace("_", " "))
        return False


def pool_specs(membership: Membership, allowed: MemberFilter | None = None) -> dict[str, PoolSpec]:
    """Router view of a membership; a member of weight 0 takes no traffic, a rejected one none either."""
    specs: dict[str, PoolSpec] = {}
    for name, view in membership.pools.items():
        members = tuple(
            MemberSpec(m, info.address, info.weight, info.protocol)
            for m, info in view.members.items()
            if info.weight > 0 and (allowed is None or allowed.admits(name, m, info.address))
        )
        if allowed is None or name in allowed.pools:
            specs[name] = PoolSpec(members=members, drained=view.drained)
    return specs


def seed_membership(cfg: GatewayConfig) -> Membership:
    """The config's static pools, used until etcd first answers."""
    return Membership.seed(
        {
            p.name: {
                m.name: MemberInfo(address=m.address, weight=m.weight, protocol=m.protocol) for m in p.members
            }
            for p in cfg.pools
        }
    )


class MembershipLink:
    """Owns the etcd client, the membership watcher and the gateway's registration."""

    def __init__(
        self,
        cfg: GatewayConfig,
        router: Router,
        set_mode: Callable[[Mode], None],
        tracer: Tracer | None = None,
        *,
        register: bool = True,
        policy: LivePolicy | None = None,
    ) -> None:
        """Args:
        register: list this process under /authgw/gateways/<instance> (a gateway does; the
            lone settlement worker only follows membership).
        policy: the stand-in engine's policy, kept on /authgw/standin/policy (policy_watch.py).
        """
        self._router = router
        self._set_mode = set_mode
        self.filter = MemberFilter(cfg)
        self._client = EtcdClient(parse_endpoints(",".join(cfg.etcd_endpoints)), security=cfg.security.etcd)
        self.watcher = MembershipWatcher(
            self._client, seed=seed_membership(cfg), on_change=self._on_change, tracer=tracer
        )
        self.registration = GatewayRegistration(self._client, cfg.instance, cfg.listen) if register else None
        key = KeyLayout().standin_policy()
        self.policy = PolicyWatch(self._client, key, policy) if policy is not None else None
        self._housekeeping: set[asyncio.Task[None]] = set()
        self.etcd_connected = False

    async def start(self) -> None:
        await self._client.follow_certificates()  # a rotated etcd client certificate: new channels
        await self.watcher.start()
        if self.policy is not None:
            await self.policy.start()
        if self.registration is not None:
            await self.registration.start()
        self._on_change(self.watcher.snapshot())

    def _on_change(self, membership: Membership) -> None:
        if membership.etcd_connected != self.etcd_connected:
            self.etcd_connected = membership.etcd_connected
            if not membership.etcd_connected:
                log.warning(
                    "etcd unreachable: routing on the last membership seen (revision %d)", membership.revision
                )
            else:
                log.info("etcd connected at revision %d", membership.revision)
        self._router.apply(pool_specs(membership, self.filter))
        self._set_mode(membership.mode)
        task = asyncio.get_running_loop().create_task(self._router.close_retired())
        self._housekeeping.add(task)
        task.add_done_callback(self._housekeeping.discard)

    async def close(self) -> None:
        if self.policy is not None:
            await self.policy.close()
        if self.registration is not None:
            await self.registration.close()
        await self.watcher.close()
        await asyncio.gather(*self._housekeeping, return_exceptions=True)
        await self._client.close()
