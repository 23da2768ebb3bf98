"""`authgw standin policy ...`: the live stand-in policy in etcd, changed under dual control.

    show     [--json]        the live version (who proposed and approved it), its text, and the
                             proposals waiting for approval
    propose  FILE            validate FILE (a TOML file whose one table is [policy]) and store it
                             as a proposal of this operator; prints its id.  `set FILE` = propose
    approve  ID              make proposal ID the live version: only another operator may
    diff     FILE            what FILE changes against the live version (unified diff of the text)
    history  [--json]        every approved version, oldest first
    rollback VERSION         propose approved VERSION's text again (another operator approves it)

Every command takes the etcd flags of `authgw drain` (--etcd, --etcd-cert/--etcd-key/--etcd-ca,
--key-root, --etcd-timeout); the certificate's CN is the operator. propose and approve write
their audit record in the same etcd transaction (`authgw audit`). gateway.policy_store holds
the rules. Exit status: 0 done, 1 refused (self-approval, stale or unknown proposal, invalid
policy: the message names the key and the fix) or etcd unreachable, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from authgw.audit import AuditError
from authgw.config import ConfigError
from authgw.security import PlaintextWarning, SecurityError
from gateway.policy_store import PolicyStore, PolicyStoreError
from health.endpoints import DEFAULT_ETCD, parse_endpoints
from health.errors import EtcdError, InvalidName
from health.etcd import EtcdClient
from health.keys import DEFAULT_ROOT, KeyLayout
from health.tls_flags import add_tls_flags, server_name, transport_security
from standin.policy_live import policy_from_text

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    etcd = argparse.ArgumentParser(add_help=False)  # after the sub-command, as in `authgw drain POOL --etcd`
    etcd.add_argument("--etcd", default=os.environ.get("AUTHGW_ETCD", DEFAULT_ETCD), help="etcd client URLs")
    etcd.add_argument("--key-root", default=DEFAULT_ROOT, help="etcd key root (default: %(default)s)")
    etcd.add_argument("--etcd-timeout", type=float, default=2.0, help="deadline of one etcd call (s)")
    add_tls_flags(etcd, "etcd", "etcd", env="AUTHGW_ETCD")
    parser = argparse.ArgumentParser(prog="authgw standin policy", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("show", "history"):
        sub.add_parser(name, parents=[etcd]).add_argument(
            "--json", action="store_true", help="one JSON document"
        )
    for name in ("propose", "set", "diff"):
        sub.add_parser(name, parents=[etcd]).add_argument("file", type=Path, help="TOML file: [policy] only")
    sub.add_parser("approve", parents=[etcd]).add_argument("proposal_id")
    sub.add_parser("rollback", parents=[etcd]).add_argument("version", type=int)
    return parser


def main(argv: list[str]) -> int:
    """argv: the words after `authgw standin policy`."""
    args = _parser().parse_args(argv)
    try:
        layout = KeyLayout(args.key_root)
        text = _read(args.file) if args.command in {"propose", "set", "diff"} else ""
        client = EtcdClient(
            parse_endpoints(args.etcd),
            request_timeout_s=args.etcd_timeout,
            security=transport_security(args, "etcd"),
            server_name=server_name(args, "etcd"),
        )
    except (InvalidName, SecurityError, ConfigError) as exc:
        print(f"authgw standin policy {args.command}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, PolicyStore(client, layout), client, text))
    except (PolicyStoreError, ConfigError) as exc:
        print(f"authgw standin policy {args.command}: refused: {exc}", file=sys.stderr)
    except (EtcdError, AuditError) as exc:
        print(f"authgw standin policy {args.command}: etcd error: {exc}", file=sys.stderr)
    return 1


def _read(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), "-", f"cannot read the file ({exc.strerror})", "check the path") from exc
    policy_from_text(text, str(path))  # the file's own errors first, naming the file
    return text


async def _run(args: argparse.Namespace, store: PolicyStore, client: EtcdClient, text: str) -> int:
    async with client, PlaintextWarning(client.security, "etcd (standin policy)"):
        command = args.command
        if command in {"propose", "set"}:
            proposal = await store.propose(text)
            print(f"proposal {proposal.proposal_id} by {proposal.proposed_by} against version"
                  f" {proposal.base_version}: another operator runs"
                  f" `authgw standin policy approve {proposal.proposal_id}`")  # fmt: skip
        elif command == "rollback":
            proposal = await store.rollback(args.version)
            print(f"proposal {proposal.proposal_id} by {proposal.proposed_by} (roll back to version"
                  f" {args.version}'s policy): another operator runs"
                  f" `authgw standin policy approve {proposal.proposal_id}`")  # fmt: skip
        elif command == "approve":
            record = await store.approve(args.proposal_id)
            print(f"version {record.version} live (proposed by {record.proposed_by}, approved by"
                  f" {record.approved_by}): every gateway applies it within seconds")  # fmt: skip
        elif command == "diff":
            print(await _diff(store, text, str(args.file)))
        elif command == "history":
            await _history(store, as_json=args.json)
        else:
            await _show(store, as_json=args.json)
    return 0


async def _diff(store: PolicyStore, text: str, name: str) -> str:
    live, _ = await store.live()
    if live is None:
        return f"no live policy in etcd (gateways use their file): {name} would become version 1"
    lines = difflib.unified_diff(
        live.policy.splitlines(keepends=True),
        text.splitlines(keepends=True),
        fromfile=f"live version {live.version}",
        tofile=name,
    )
    return "".join(lines) or f"{name} is the live version {live.version}: no change"


async def _history(store: PolicyStore, *, as_json: bool) -> None:
    records = await store.history()
    if as_json:
        print(json.dumps([asdict(r) for r in records], indent=2))
        return
    for r in records:
        rollback = f"  rollback of {r.rollback_of}" if r.rollback_of is not None else ""
        print(f"version {r.version:<4} {r.approved_at}  proposed by {r.proposed_by:<16} approved by"
              f" {r.approved_by:<16} sha256 {r.sha256[:12]}{rollback}")  # fmt: skip
    if not records:
        print("no approved version: every gateway uses its policy file (version 0)")


async def _show(store: PolicyStore, *, as_json: bool) -> None:
    live, _ = await store.live()
    approved = {r.proposal for r in await store.history()}
    pending = [p for p in await store.proposals() if p.proposal_id not in approved]
    warning = "" if live is None else await store.unrecorded(live)
    if as_json:
        doc = {"live": asdict(live) if live else None, "pending": [asdict(p) for p in pending]}
        print(json.dumps(doc | {"unrecorded": warning}, indent=2))
        return
    if warning:
        print(f"WARNING: {warning}; see `authgw audit`", file=sys.stderr)
    if live is None:
        print("no live policy in etcd: every gateway uses its policy file (version 0)")
    else:
        print(f"live version {live.version}: proposed by {live.proposed_by}, approved by {live.approved_by}"
              f" at {live.approved_at}, sha256 {live.sha256[:12]}\n")  # fmt: skip
        print(live.policy.rstrip())
    print(f"\n{len(pending)} proposal(s) waiting for approval")
    current = live.version if live else 0
    for p in pending:
        stale = "" if p.base_version == current else "  (stale: cannot be approved, propose again)"
        print(f"  {p.proposal_id}  by {p.proposed_by:<16} against version {p.base_version}{stale}")
