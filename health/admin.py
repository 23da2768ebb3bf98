"""Operator commands on etcd: `authgw pools | drain | undrain | mode`, and `audit`, `etcd-auth`.

    authgw pools   [--json]             pools, members (lease TTL left), drain flags, mode, gateways
    authgw drain   POOL                 route no new traffic to POOL
    authgw undrain POOL                 route to POOL again
    authgw mode    auto|force-standin|force-issuer
    audit          [--operator NAME] [--json]   the operators' audit records, oldest first
    etcd-auth      --pool P ... --gateway G ... --operator O ... [--reader R ...] [--plan]
                                        etcd users and roles from the key layout, then auth enable

(`audit` and `etcd-auth` run as `python -m health.admin audit ...` until the
`authgw` dispatcher lists them.) Every command takes --etcd URL[,URL...]
(default: $AUTHGW_ETCD or 127.0.0.1:2379) and the operator's etcd client
certificate: --etcd-cert / --etcd-key / --etcd-ca (defaults $AUTHGW_ETCD_CERT,
_KEY, _CA; health.tls_flags), or --etcd-insecure for a plaintext development etcd.

drain, undrain and mode write their audit record (authgw.audit) in the same
etcd transaction as the change, under the CN of the certificate used: etcd
refuses both or writes both. Exit status: 0 done, 1 etcd unreachable or
refused (permission denied names the key and the etcd user), 2 bad usage
(unknown mode, invalid name, missing or unusable certificate flag).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from authgw.audit import AuditError, AuditRecord, Identity, new_record
from authgw.security import PlaintextWarning, SecurityError
from health import etcd_auth
from health.endpoints import DEFAULT_ETCD, parse_endpoints
from health.errors import EtcdError, EtcdRequestFailed, InvalidName
from health.etcd import EtcdClient, TxnDelete, TxnOp, TxnPut, TxnResult
from health.keys import DEFAULT_ROOT, GatewayKey, KeyLayout, MemberKey, check_name
from health.membership import Mode
from health.tls_flags import add_tls_flags, server_name, transport_security

__all__ = ["audited_transaction", "main"]

_HELP = {
    "pools": "print pools, members and live gateways from etcd",
    "drain": "stop routing new requests to a pool",
    "undrain": "route to a drained pool again",
    "mode": "set the routing mode: auto | force-standin | force-issuer",
    "audit": "list the operators' audit records (drain, undrain, mode)",
    "etcd-auth": "create etcd's users and roles from the key layout and enable auth (as etcd's root)",
}


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"authgw {command}", description=_HELP[command])
    parser.add_argument(
        "--etcd",
        default=os.environ.get("AUTHGW_ETCD", DEFAULT_ETCD),
        help="etcd client URLs, comma-separated (default: $AUTHGW_ETCD or %(default)s)",
    )
    parser.add_argument("--key-root", default=DEFAULT_ROOT, help="etcd key root (default: %(default)s)")
    parser.add_argument(
        "--etcd-timeout", type=float, default=2.0, help="deadline of one etcd call in seconds"
    )
    add_tls_flags(parser, "etcd", "etcd", env="AUTHGW_ETCD")
    if command in {"pools", "audit"}:
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    if command == "audit":
        parser.add_argument("--operator", default=None, help="only this operator's records")
    elif command in {"drain", "undrain"}:
        parser.add_argument("pool", help="pool name")
    elif command == "mode":
        parser.add_argument("mode", help="auto | force-standin | force-issuer")
    elif command == "etcd-auth":
        _etcd_auth_arguments(parser)
    return parser


def _etcd_auth_arguments(parser: argparse.ArgumentParser) -> None:
    def names(flag: str, meaning: str) -> None:
        parser.add_argument(flag, action="append", default=[], metavar="NAME", help=f"{meaning} (repeat)")

    names("--pool", "an issuer pool: its agent is etcd user agent-<pool>")
    names("--gateway", "a gateway instance: etcd user authgw-gateway-<instance>")
    names("--operator", "an operator: the CN of its certificate")
    names("--reader", "a read-only user of the membership, e.g. authgw-settle")
    parser.add_argument("--plan", action="store_true", help="print the users and roles; change nothing")


def main(argv: list[str]) -> int:
    """Run one admin command; argv[0] is the command name (pools, drain, undrain, mode, audit, etcd-auth)."""
    command = argv[0]
    if command not in _HELP:
        print(f"authgw: {command!r} is not an admin command ({', '.join(_HELP)})", file=sys.stderr)
        return 2
    args = _parser(command).parse_args(argv[1:])
    try:
        layout = KeyLayout(args.key_root)
        if command == "mode":
            args.mode = Mode.parse(args.mode)
        elif command in {"drain", "undrain"}:
            check_name("pool", args.pool)
        elif command == "etcd-auth":
            plan = etcd_auth.draw_plan(
                layout, pools=args.pool, gateways=args.gateway, operators=args.operator, readers=args.reader
            )
            if args.plan:
                print(etcd_auth.render_plan(plan))
                return 0
        client = EtcdClient(
            parse_endpoints(args.etcd),
            request_timeout_s=args.etcd_timeout,
            security=transport_security(args, "etcd"),
            server_name=server_name(args, "etcd"),
        )
        if command == "etcd-auth":
            _check_root(client)
    except (InvalidName, SecurityError) as exc:
        print(f"authgw {command}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(command, args, layout, client))
    except (EtcdError, AuditError) as exc:
        print(f"authgw {command}: etcd error: {exc}", file=sys.stderr)
        return 1


def _check_root(client: EtcdClient) -> None:
    if client.user is None:
        raise InvalidName(
            "etcd-auth needs mutual TLS: etcd maps a client certificate's CN to its user only over TLS"
            " (--client-cert-auth); give root's certificate with --etcd-cert/--etcd-key/--etcd-ca"
        )
    if client.user != etcd_auth.ROOT:
        raise InvalidName(
            f"--etcd-cert is etcd user {client.user!r}: etcd-auth runs as etcd's root user;"
            " give a certificate whose CN is root"
        )


async def _run(command: str, args: argparse.Namespace, layout: KeyLayout, client: EtcdClient) -> int:
    async with client, PlaintextWarning(client.security, f"etcd ({command})"):
        if command == "pools":
            report = await _pools_report(client, layout)
            print(json.dumps(report, indent=2) if args.json else _render(report))
        elif command == "audit":
            await _print_audit(client, layout, args.operator, as_json=args.json)
        elif command == "etcd-auth":
            await _etcd_auth(client, args, layout)
        else:
            await _operator_write(command, args, layout, client)
    return 0


async def _operator_write(
    command: str, args: argparse.Namespace, layout: KeyLayout, client: EtcdClient
) -> None:
    if command == "drain":
        stamp = json.dumps({"drained_at": datetime.now(UTC).isoformat()}).encode()
        key = layout.drain(args.pool)
        ops: list[TxnOp] = [TxnPut(key, stamp)]
        await audited_transaction(client, layout, "drain", target=key, ops=ops, details={"pool": args.pool})
        print(f"pool {args.pool} drained: gateways send it no new traffic")
    elif command == "undrain":
        key = layout.drain(args.pool)
        result = await audited_transaction(
            client, layout, "undrain", target=key, ops=[TxnDelete(key)], details={"pool": args.pool}
        )
        existed = any(result.deleted)
        print(f"pool {args.pool} undrained" if existed else f"pool {args.pool} was not drained")
    else:
        key = layout.mode()
        mode = str(args.mode)
        ops = [TxnPut(key, mode.encode())]
        await audited_transaction(client, layout, "mode", target=key, ops=ops, details={"mode": mode})
        print(f"mode set to {args.mode}")


async def audited_transaction(
    client: EtcdClient,
    layout: KeyLayout,
    action: str,
    *,
    target: str,
    ops: Sequence[TxnOp],
    details: dict[str, Any],
    absent: Sequence[str] = (),
    unchanged: dict[str, int] | None = None,
) -> TxnResult:
    """Apply `ops` and the audit record of them in one transaction: both or neither.

    `absent` and `unchanged` are further conditions (EtcdClient.transaction); when one fails
    nothing is written and the result says not applied.
    """
    identity = Identity.from_certificate(client.user) if client.user else Identity.from_os()
    record = new_record(action, target, identity, details)
    # Plaintext etcd authenticates nobody: such records go under a name that says so.
    owner = identity.name if identity.source == "certificate" else "unverified"
    key = layout.audit(owner, record.record_id)
    ops = [*ops, TxnPut(key, record.to_json())]
    result = await client.transaction(ops, absent=[key, *absent], unchanged=unchanged)
    if not result.applied:
        if not absent and not unchanged:  # 32 random bits in the same microsecond: retrying is the fix
            raise EtcdRequestFailed(f"audit record {key} already exists; nothing was changed: run it again")
        return result
    print(f"audit record {key}")
    return result


async def _print_audit(client: EtcdClient, layout: KeyLayout, operator: str | None, *, as_json: bool) -> None:
    prefix = layout.audit_prefix if operator is None else layout.audit_of(operator)
    result = await client.get_prefix(prefix)
    records: list[AuditRecord] = []
    for kv in result.kvs:
        try:
            records.append(AuditRecord.from_json(kv.value))
        except AuditError as exc:
            print(f"authgw audit: skipping {kv.key}: {exc}", file=sys.stderr)
    records.sort(key=lambda r: r.record_id)
    if as_json:
        print(json.dumps([json.loads(r.to_json()) for r in records], indent=2))
        return
    for r in records:
        details = " ".join(f"{k}={v}" for k, v in sorted(r.details.items()))
        print(f"{r.at.isoformat()}  {r.identity.name:<20} {r.action:<8} {r.target}  {details}")
    if not records:
        print("no audit records")


async def _etcd_auth(client: EtcdClient, args: argparse.Namespace, layout: KeyLayout) -> None:
    plan = etcd_auth.draw_plan(
        layout, pools=args.pool, gateways=args.gateway, operators=args.operator, readers=args.reader
    )
    changes = await etcd_auth.apply_plan(client, plan)
    for change in changes:
        print(change)
    print(f"etcd auth enabled: {len(changes)} changes" if changes else "etcd auth enabled: nothing to change")
    for extra in await etcd_auth.list_unplanned(client, plan):
        print(f"not in this plan, left alone: {extra}")


async def _pools_report(client: EtcdClient, layout: KeyLayout) -> dict[str, Any]:
    """Read the whole prefix once and ask etcd how long each lease has left."""
    result = await client.get_prefix(layout.prefix)
    membership = layout.fold(
        {kv.key: kv.value for kv in result.kvs}, revision=result.revision, etcd_connected=True
    )
    leases = {layout.parse(kv.key): kv.lease for kv in result.kvs if kv.lease}
    ttl_left = {lease: await client.lease_ttl(lease) for lease in set(leases.values())}

    def ttl(ref: MemberKey | GatewayKey) -> int | None:
        lease = leases.get(ref)
        return None if lease is None else ttl_left.get(lease)

    return {
        "revision": membership.revision,
        "mode": str(membership.mode),
        "pools": {
            name: {
                "drained": view.drained,
                "members": {
                    member: {
                        "address": info.address,
                        "zone": info.zone,
                        "weight": info.weight,
                        "version": info.version,
                        "registered_at": info.registered_at.isoformat(),
                        "lease_ttl_s": ttl(MemberKey(name, member)),
                    }
                    for member, info in view.members.items()
                },
            }
            for name, view in membership.pools.items()
        },
        "gateways": {
            instance: {
                "address": info.address,
                "started_at": info.started_at.isoformat(),
                "lease_ttl_s": ttl(GatewayKey(instance)),
            }
            for instance, info in membership.gateways.items()
        },
    }


def _render(report: dict[str, Any]) -> str:
    lines = [f"mode: {report['mode']}    (etcd revision {report['revision']})", ""]
    if not report["pools"]:
        lines.append("no pools registered")
    for name, pool in report["pools"].items():
        lines.append(
            f"pool {name}: {'DRAINED' if pool['drained'] else 'active'}, {len(pool['members'])} live members"
        )
        for member, m in pool["members"].items():
            ttl = "-" if m["lease_ttl_s"] is None else f"{m['lease_ttl_s']}s"
            zone = m["zone"] or "-"
            lines.append(
                f"  {member:<16} {m['address']:<22} zone {zone:<8} weight {m['weight']:<4} lease {ttl} left"
            )
    lines += ["", f"gateways: {len(report['gateways'])} live"]
    for instance, g in report["gateways"].items():
        ttl = "-" if g["lease_ttl_s"] is None else f"{g['lease_ttl_s']}s"
        lines.append(f"  {instance:<16} {g['address']:<22} since {g['started_at']}  lease {ttl} left")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
