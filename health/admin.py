"""Operator commands on the etcd membership: `authgw pools | drain | undrain | mode`.

    authgw pools   [--json]             pools, members (lease TTL left), drain flags, mode, gateways
    authgw drain   POOL                 route no new traffic to POOL
    authgw undrain POOL                 route to POOL again
    authgw mode    auto|force-standin|force-issuer

Every command takes --etcd URL[,URL...] (default: $AUTHGW_ETCD or
http://127.0.0.1:2379). Exit status: 0 done, 1 etcd unreachable or refused,
2 bad usage (unknown mode, invalid pool name).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from health.endpoints import DEFAULT_ETCD, parse_endpoints
from health.errors import EtcdError, InvalidName
from health.etcd import EtcdClient
from health.keys import DEFAULT_ROOT, GatewayKey, KeyLayout, MemberKey, check_name
from health.membership import Mode

__all__ = ["main"]

_HELP = {
    "pools": "print pools, members and live gateways from etcd",
    "drain": "stop routing new requests to a pool",
    "undrain": "route to a drained pool again",
    "mode": "set the routing mode: auto | force-standin | force-issuer",
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
    if command == "pools":
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    elif command in {"drain", "undrain"}:
        parser.add_argument("pool", help="pool name")
    else:
        parser.add_argument("mode", help="auto | force-standin | force-issuer")
    return parser


def main(argv: list[str]) -> int:
    """Run one admin command; argv[0] is the command name (pools, drain, undrain, mode)."""
    command = argv[0]
    if command not in _HELP:
        print(f"authgw: {command!r} is not an admin command ({', '.join(_HELP)})", file=sys.stderr)
        return 2
    parser = _parser(command)
    args = parser.parse_args(argv[1:])
    try:
        layout = KeyLayout(args.key_root)
        endpoints = parse_endpoints(args.etcd)
        if command == "mode":
            args.mode = Mode.parse(args.mode)
        elif command in {"drain", "undrain"}:
            check_name("pool", args.pool)
    except InvalidName as exc:
        print(f"authgw {command}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(
            _run(command, args, layout, EtcdClient(endpoints, request_timeout_s=args.etcd_timeout))
        )
    except EtcdError as exc:
        print(f"authgw {command}: etcd error: {exc}", file=sys.stderr)
        return 1


async def _run(command: str, args: argparse.Namespace, layout: KeyLayout, client: EtcdClient) -> int:
    async with client:
        if command == "pools":
            report = await _pools_report(client, layout)
            print(json.dumps(report, indent=2) if args.json else _render(report))
        elif command == "drain":
            stamp = json.dumps({"drained_at": datetime.now(UTC).isoformat()}).encode()
            await client.put(layout.drain(args.pool), stamp)
            print(f"pool {args.pool} drained: gateways send it no new traffic")
        elif command == "undrain":
            existed = await client.delete(layout.drain(args.pool))
            print(f"pool {args.pool} undrained" if existed else f"pool {args.pool} was not drained")
        else:
            await client.put(layout.mode(), str(args.mode).encode())
            print(f"mode set to {args.mode}")
    return 0


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
