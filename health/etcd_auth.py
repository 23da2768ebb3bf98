"""etcd users, roles and permissions drawn from the key layout, and `auth enable`: the `etcd-auth` command.

etcd runs with `--client-cert-auth`: the CN of a client's certificate is its etcd
user, so there are no passwords (users are created without one: a password could
only be a second, weaker way in). Who may do what (R = the key root, /authgw):

| user (certificate CN)       | roles                          | may                                    |
|-----------------------------|--------------------------------|----------------------------------------|
| `agent-<pool>`              | authgw-agent-<pool>            | write R/pools/<pool>/members/*         |
| `authgw-gateway-<instance>` | authgw-gateway-<instance>      | read R/*; write R/gateways/<instance>  |
|                             |                                | and R/gateways/<instance>-w* (workers) |
| each `--operator NAME`      | authgw-operator,               | read R/*, R-audit/*, R-policy/*; write |
|                             | authgw-audit-<NAME>            | R/pools/<pool>/drain, R/mode,          |
|                             |                                | R/standin/policy, R-policy/history/*,  |
|                             |                                | R-audit/<NAME>/* (its own records),    |
|                             |                                | R-policy/proposals/<NAME>/* (its own)  |
| each `--reader NAME`        | authgw-reader                  | read R/* (a settlement worker)         |
| `root`                      | root                           | everything: only this command uses it  |

Dual control of the stand-in policy: etcd's roles cannot require two people for one
write (every operator may write R/standin/policy: an approval writes it). What they do
enforce is who proposed: a proposal lives under R-policy/proposals/<NAME>/, which only
NAME may write. `authgw standin policy approve` (gateway.policy_store) refuses an approver
whose certificate CN is the proposer's and writes the new version, its history entry and
the audit record naming both operators in one transaction that also checks the live key
has not changed since it was read. An operator who bypasses the command (etcdctl) can
write the key alone: that write has no audit record and no history entry, which the
audit trail (and `authgw standin policy show`, which flags a live version missing from
the history) makes visible; the audit trail is the control for that case.

A gateway instance is its own etcd user, `authgw-gateway-<instance>`, the CN of
the etcd client certificate issued for that instance: that is what makes "a
gateway writes only its own key" hold. `authgw serve --workers N` runs instances
`<instance>-w<i>` with the same certificate, hence the `-w` prefix; the command
refuses an instance named like another's worker, whose key that prefix would cover.

Leases in etcd 3.4 under auth: any user may grant a lease and keep any lease
alive (etcd checks no key there); revoking needs write permission on every key
attached; putting a key on a lease needs write on the key. So an agent revokes its
own member keys and nobody else's; a gateway that knew an agent's lease ID could
keep a dead agent's member alive (etcd 3.4 offers no way to forbid it). A watch
needs read on its whole range.

The command converges: it adds missing roles, permissions, users and role grants,
revokes permissions of the roles it manages that the plan no longer has, and
enables auth (root user first, as etcd requires); a second run changes nothing.
It never deletes a user: users and `authgw-*` roles outside the plan are listed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aetcd import rpc

from health.errors import InvalidName
from health.etcd import EtcdClient
from health.keys import KeyLayout, check_name

__all__ = [
    "Access",
    "AuthPlan",
    "Grant",
    "Role",
    "User",
    "apply_plan",
    "draw_plan",
    "list_unplanned",
    "render_plan",
]

ROOT = "root"
_MANAGED = "authgw-"  # roles this command owns start with this


class Access(enum.Enum):
    """etcd's permission types."""

    READ = rpc.Permission.READ
    WRITE = rpc.Permission.WRITE
    READWRITE = rpc.Permission.READWRITE


@dataclass(frozen=True)
class Grant:
    """A permission on one key (`range_end` empty) or on the range [key, range_end)."""

    key: str
    range_end: str
    access: Access

    @classmethod
    def prefix(cls, prefix: str, access: Access) -> Grant:
        """Every key starting with `prefix`."""
        return cls(prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1), access)

    @classmethod
    def exact(cls, key: str, access: Access) -> Grant:
        return cls(key, "", access)

    def describe(self) -> str:
        where = f"{self.key}*" if self.range_end else self.key
        if self.range_end and self.range_end != Grant.prefix(self.key, self.access).range_end:
            where = f"[{self.key}, {self.range_end})"
        return f"{self.access.name.lower():<9} {where}"


@dataclass(frozen=True)
class Role:
    name: str
    grants: tuple[Grant, ...]


@dataclass(frozen=True)
class User:
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class AuthPlan:
    """The users and roles one layout and fleet need."""

    roles: tuple[Role, ...]
    users: tuple[User, ...]


def draw_plan(
    layout: KeyLayout,
    *,
    pools: Sequence[str],
    gateways: Sequence[str],
    operators: Sequence[str],
    readers: Sequence[str] = (),
) -> AuthPlan:
    """The roles and users of the table above; InvalidName for a bad or clashing name."""
    _check_workers(gateways)
    membership = Grant.prefix(layout.prefix, Access.READ)
    roles: list[Role] = []
    users: list[User] = [User(ROOT, (ROOT,))]
    for pool in pools:
        role = Role(f"authgw-agent-{pool}", (Grant.prefix(layout.members_prefix(pool), Access.WRITE),))
        roles.append(role)
        users.append(User(f"agent-{pool}", (role.name,)))
    for instance in gateways:
        own = layout.gateway(instance)
        role = Role(
            f"authgw-gateway-{instance}",
            (membership, Grant.exact(own, Access.WRITE), Grant.prefix(f"{own}-w", Access.WRITE)),
        )
        roles.append(role)
        users.append(User(role.name, (role.name,)))
    if operators:
        drains = tuple(Grant.exact(layout.drain(pool), Access.WRITE) for pool in pools)
        audit = Grant.prefix(layout.audit_prefix, Access.READ)
        mode = Grant.exact(layout.mode(), Access.WRITE)
        policy = (
            Grant.exact(layout.standin_policy(), Access.WRITE),
            Grant.prefix(layout.policy_prefix, Access.READ),
            Grant.prefix(layout.policy_history_prefix, Access.WRITE),
        )
        roles.append(Role("authgw-operator", (membership, audit, mode, *policy, *drains)))
    for operator in operators:
        records = Grant.prefix(layout.audit_of(operator), Access.WRITE)
        proposals = Grant.prefix(layout.policy_proposals_of(operator), Access.WRITE)
        own_records = Role(f"authgw-audit-{operator}", (records, proposals))
        roles.append(own_records)
        users.append(User(check_name("operator", operator), ("authgw-operator", own_records.name)))
    if readers:
        roles.append(Role("authgw-reader", (membership,)))
        users += [User(check_name("reader", reader), ("authgw-reader",)) for reader in readers]
    _check_unique([u.name for u in users])
    return AuthPlan(tuple(roles), tuple(users))


def _check_workers(gateways: Sequence[str]) -> None:
    for instance in gateways:
        check_name("gateway instance", instance)
        for other in gateways:
            if other != instance and other.startswith(f"{instance}-w"):
                raise InvalidName(
                    f"gateway instance {other!r} looks like a worker of {instance!r} (<instance>-w<i>):"
                    f" {instance!r}'s role would cover its key; rename one of them"
                )


def _check_unique(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidName(f"etcd user {name!r} given twice (as operator, reader, or a generated name)")
        seen.add(name)


def render_plan(plan: AuthPlan) -> str:
    """The plan as text: users and their roles, then each role's permissions."""
    lines = ["users:"]
    lines += [f"  {u.name:<32} {', '.join(u.roles)}" for u in plan.users]
    lines.append("roles:")
    for role in plan.roles:
        lines.append(f"  {role.name}")
        lines += [f"    {grant.describe()}" for grant in role.grants]
    return "\n".join(lines)


async def apply_plan(client: EtcdClient, plan: AuthPlan) -> list[str]:
    """Make etcd's users and roles match `plan`, then enable auth; return what was changed."""
    changes: list[str] = []
    existing_roles = set((await _auth(client, "RoleList", rpc.AuthRoleListRequest())).roles)
    for role in plan.roles:
        if role.name not in existing_roles:
            await _auth(client, "RoleAdd", rpc.AuthRoleAddRequest(name=role.name))
            changes.append(f"added role {role.name}")
        changes += await _converge_role(client, role)
    existing_users = set((await _auth(client, "UserList", rpc.AuthUserListRequest())).users)
    for user in plan.users:
        if user.name not in existing_users:
            options = rpc.UserAddOptions(no_password=True)
            await _auth(client, "UserAdd", rpc.AuthUserAddRequest(name=user.name, options=options))
            changes.append(f"added user {user.name} (no password: certificate only)")
        changes += await _converge_user(client, user)
    await _auth(client, "AuthEnable", rpc.AuthEnableRequest())
    return changes


def unplanned(plan: AuthPlan, users: Sequence[str], roles: Sequence[str]) -> list[str]:
    """Users and authgw-* roles etcd has but the plan does not name (left alone, listed)."""
    planned_users = {u.name for u in plan.users}
    planned_roles = {r.name for r in plan.roles}
    extra = [f"user {u}" for u in users if u not in planned_users]
    return extra + [f"role {r}" for r in roles if r.startswith(_MANAGED) and r not in planned_roles]


async def list_unplanned(client: EtcdClient, plan: AuthPlan) -> list[str]:
    users = (await _auth(client, "UserList", rpc.AuthUserListRequest())).users
    roles = (await _auth(client, "RoleList", rpc.AuthRoleListRequest())).roles
    return unplanned(plan, list(users), list(roles))


async def _converge_role(client: EtcdClient, role: Role) -> list[str]:
    current = (await _auth(client, "RoleGet", rpc.AuthRoleGetRequest(role=role.name))).perm
    have = {Grant(p.key.decode(), p.range_end.decode(), Access(p.permType)) for p in current}
    wanted = set(role.grants)
    changes = []
    for grant in sorted(wanted - have, key=_order):
        perm = rpc.Permission(
            permType=grant.access.value, key=grant.key.encode(), range_end=grant.range_end.encode()
        )
        request = rpc.AuthRoleGrantPermissionRequest(name=role.name, perm=perm)
        await _auth(client, "RoleGrantPermission", request)
        changes.append(f"granted {role.name}: {grant.describe()}")
    wanted_ranges = {(g.key, g.range_end) for g in wanted}
    for grant in sorted(have, key=_order):
        if (grant.key, grant.range_end) not in wanted_ranges:
            request = rpc.AuthRoleRevokePermissionRequest(
                role=role.name, key=grant.key.encode(), range_end=grant.range_end.encode()
            )
            await _auth(client, "RoleRevokePermission", request)
            changes.append(f"revoked {role.name}: {grant.describe()}")
    return changes


def _order(grant: Grant) -> tuple[str, str, int]:
    return grant.key, grant.range_end, grant.access.value


async def _converge_user(client: EtcdClient, user: User) -> list[str]:
    current = set((await _auth(client, "UserGet", rpc.AuthUserGetRequest(name=user.name))).roles)
    changes = []
    for role in user.roles:
        if role not in current:
            await _auth(client, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user=user.name, role=role))
            changes.append(f"granted role {role} to {user.name}")
    for role in sorted(current - set(user.roles)):
        if role.startswith(_MANAGED):
            await _auth(client, "UserRevokeRole", rpc.AuthUserRevokeRoleRequest(name=user.name, role=role))
            changes.append(f"revoked role {role} from {user.name}")
    return changes


async def _auth(client: EtcdClient, method: str, request: object) -> Any:
    """One Auth RPC (aetcd's message types; its errors are translated by EtcdClient)."""
    return await client.auth_request(method, request, what=f"etcd auth {method}")
