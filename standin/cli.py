"""`authgw standin <command>`: operator tools for stand-in.

    authgw standin load-card-status FILE   load issuer card statuses (CSV or JSON lines) into Redis
    authgw standin status                  Redis reachability, stream depth per partition, local backlog,
                                           and settlement: unsettled, oldest, dead letters, per gateway
                                           settled counts and amounts, workers (settlement/status.py);
                                           pan_keys: entries per PAN key id, and whether a retired key
                                           may be dropped (settlement/pankeys.py); exposure: each
                                           budget's fleet-wide approved amount against its ceiling
    authgw standin reconcile               decisions journaled vs advices the issuer acknowledged,
                                           by count and amount; differences by decision id
    authgw standin replay                  move this host's local SQLite backlog to Redis now
    authgw standin replay --dead-letters   put dead letters back in the journal: the settlement
                                           workers send them again (all, or --decision-id ID ...)
    authgw standin acl [--cluster]         print the Redis ACL file lines of the configured users
                                           (gateway, settle, operator: see standin/acl.py)

Every command takes the gateway's config file (--config, default $AUTHGW_CONFIG, else
config/gateway.toml) and finds what that gateway uses: its Redis, its journal partitions
and its own local SQLite journal (`<instance>.sqlite3`). `authgw standin` resolves it
(gateway/standin_cmd.py); a stand-in file given directly works too. `replay
--local-journal FILE` settles another host's local journal, e.g. a copy of the file of a
gateway whose host never came back (exactly once: see standin/migrate.py).

The commands that talk to Redis log in as `[redis.operator]` when the stand-in file has
it (else as the gateway, whose ACL user may not write card statuses or dead letters).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from redis.asyncio.connection import parse_url

from authgw.observability import LogFormat, configure_logging
from standin.acl import acl_lines
from standin.cardstatus import load_card_statuses, read_card_status_file
from standin.engine import StandIn
from standin.errors import ConfigError, StandInError
from standin.journal import StreamJournal
from standin.redis_config import RedisRole
from standin.redis_io import RedisGate, password_file
from standin.redis_link import RedisLink
from standin.settings import StandInConfig, load_config
from standin.settlement.deadletter import dead_letters, requeue
from standin.settlement.reconcile import from_fields, reconcile
from standin.settlement.status import settlement_status
from standin.sqlite_journal import SqliteJournal
from standin.tokens import CardTokenizer

__all__ = ["main"]

_DEFAULT_CONFIG = "config/gateway.toml"
_ADMIN_DEADLINE = timedelta(seconds=5)  # operator commands scan streams: not the decision path's 120 ms


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("AUTHGW_CONFIG", _DEFAULT_CONFIG)),
        help="the gateway's TOML config (default: $AUTHGW_CONFIG or config/gateway.toml)",
    )
    p = argparse.ArgumentParser(prog="authgw standin", description="stand-in operator tools")
    sub = p.add_subparsers(dest="command", required=True)
    load = sub.add_parser(
        "load-card-status", parents=[common], help="load issuer card statuses into Redis (tokenized)"
    )
    load.add_argument("file", type=Path, help="CSV (pan,status) or JSON lines ({pan, status})")
    load.add_argument("--batch", type=int, default=1000, help="cards per Redis pipeline")
    sub.add_parser("status", parents=[common], help="print Redis reachability, journal depth, local backlog")
    rec = sub.add_parser(
        "reconcile", parents=[common], help="decisions journaled vs advices acknowledged by the issuer"
    )
    rec.add_argument("--limit", type=int, default=1000, help="differences listed at most (all are counted)")
    replay = sub.add_parser(
        "replay", parents=[common], help="move the local SQLite backlog to Redis now (or --dead-letters)"
    )
    replay.add_argument(
        "--dead-letters", action="store_true", help="put dead letters back in the journal to be sent again"
    )
    replay.add_argument(
        "--decision-id", action="append", default=None, help="with --dead-letters: only this one (repeatable)"
    )
    acl = sub.add_parser("acl", parents=[common], help="print the Redis ACL lines of the configured users")
    acl.add_argument(
        "--cluster",
        action="store_true",
        help="also what redis-py's cluster client needs (CLUSTER SLOTS..); implied by [redis] cluster = true",
    )
    replay.add_argument(
        "--local-journal",
        type=Path,
        default=None,
        help="move this SQLite journal instead of the gateway's own (e.g. a copy from a lost host)",
    )
    return p


def _admin_link(config: StandInConfig) -> RedisLink:
    """The operator's Redis client, with deadlines for scans rather than decisions."""
    return RedisLink(
        replace(config.redis, socket_timeout=_ADMIN_DEADLINE, connect_timeout=timedelta(seconds=1)),
        RedisRole.OPERATOR,
    )


ConfigLoader = Callable[[Path], StandInConfig]
"""Resolves --config to the stand-in config a gateway uses (gateway/standin_cmd.py)."""


def main(argv: list[str], load: ConfigLoader = load_config) -> int:
    """Entry point; argv[0] is "standin" (`authgw settle` is gateway.settlement.command: it needs gRPC)."""
    configure_logging(LogFormat.TEXT, os.environ.get("AUTHGW_LOG_LEVEL", "INFO"))
    parser = _parser()
    args = parser.parse_args(argv[1:])
    if getattr(args, "decision_id", None) and not args.dead_letters:
        parser.error("--decision-id goes with --dead-letters")
    if getattr(args, "local_journal", None) and args.dead_letters:
        parser.error("--local-journal goes without --dead-letters")
    try:
        config = load(args.config)
        if getattr(args, "local_journal", None):
            config = replace(config, sqlite_path=args.local_journal.resolve())
        return asyncio.run(_COMMANDS[args.command](config, args))
    except (StandInError, ConfigError) as exc:
        print(f"authgw standin {args.command}: {exc}", file=sys.stderr)
        if "NOPERM" in str(exc) or "no permissions" in str(exc):
            print(_NOPERM_HINT, file=sys.stderr)
        return 1


_NOPERM_HINT = (
    "Redis refused a command to this ACL user: operator commands need the operator's user "
    "([redis.operator] in the stand-in file; its rules: `authgw standin acl`)"
)


async def _load_card_status(config: StandInConfig, args: argparse.Namespace) -> int:
    async with RedisLink(config.redis, RedisRole.OPERATOR) as link:
        # A bulk load may take seconds; the tight per-decision deadline does not apply.
        gate = RedisGate(link.client, deadline=config.redis.command_deadline * 50)
        report = await load_card_statuses(
            gate, CardTokenizer(config.token_key), read_card_status_file(args.file), batch=args.batch
        )
    print(json.dumps({"file": str(args.file), "set": report.set, "cleared": report.cleared}))
    return 0


async def _status(config: StandInConfig, args: argparse.Namespace) -> int:
    async with StandIn.from_config(config, role=RedisRole.OPERATOR) as engine:
        status = await engine.status()
        out: dict[str, object] = {
            "redis_up": status.redis_up,
            "local_backlog": status.local_backlog,
            "oldest_local_ms": status.oldest_local_ms,
            "local_by_pan_key": status.local_by_pan_key,
        }
        if status.redis_up:
            async with _admin_link(config) as link:
                redis = link.client
                journal = StreamJournal(
                    RedisGate(redis, config.redis.command_deadline * 10),
                    partitions=config.journal.partitions,
                    consumer_group=config.journal.consumer_group,
                    dedupe_ttl=config.journal.dedupe_ttl,
                )
                out["partitions"] = [
                    {"partition": p, "length": length, "pending": pending}
                    for p, length, pending in await journal.depth()
                ]
                settlement = await settlement_status(
                    RedisGate(redis, _ADMIN_DEADLINE),
                    config.journal,
                    now_ms=int(time.time() * 1000),
                    local_backlog=(status.local_backlog, status.oldest_local_ms),
                    keyring=config.pan_keyring(),
                    local_by_pan_key=status.local_by_pan_key,
                )
                out["pan_keys"] = settlement.pop("pan_keys")
                out["settlement"] = settlement
            out["exposure"] = [
                {"budget": b.name, "exposure_minor": b.exposure_minor, "budget_minor": b.budget_minor,
                 "period_s": b.period_s}
                for b in await engine.exposure()
            ]  # fmt: skip
    print(json.dumps(out))
    return 0


async def _reconcile(config: StandInConfig, args: argparse.Namespace) -> int:
    local = SqliteJournal(config.sqlite_path, window=config.policy.window)
    try:
        await local.open()
        entries = await local.pending(10_000_000)
    finally:
        await local.close()
    async with _admin_link(config) as link:
        report = await reconcile(
            RedisGate(link.client, _ADMIN_DEADLINE),
            config.journal,
            local=[from_fields(e.fields, "local") for e in entries],
            limit=args.limit,
        )
    print(json.dumps(report))
    return 0


async def _replay_dead_letters(config: StandInConfig, args: argparse.Namespace) -> int:
    async with _admin_link(config) as link:
        gate = RedisGate(link.client, _ADMIN_DEADLINE)
        chosen = set(args.decision_id) if args.decision_id else None
        moved = await requeue(gate, config.journal.partitions, chosen)
        left = len(await dead_letters(gate, config.journal.partitions))
    print(json.dumps({"requeued": moved, "dead_letters": left}))
    return 0


async def _replay(config: StandInConfig, args: argparse.Namespace) -> int:
    if args.dead_letters:
        return await _replay_dead_letters(config, args)
    async with StandIn.from_config(config, role=RedisRole.OPERATOR) as engine:
        moved = await engine.move_backlog()
        status = await engine.status()
    print(json.dumps({"moved": moved, "local_backlog": status.local_backlog}))
    return 0


async def _acl(config: StandInConfig, args: argparse.Namespace) -> int:
    """Print the ACL lines; which user runs what goes to stderr, the file's lines alone to stdout."""
    users: dict[RedisRole, tuple[str, str]] = {}
    for role, login in config.redis.logins().items():
        settings = config.redis.for_role(role)
        section = "redis" if role is RedisRole.GATEWAY else f"redis.{role.value}"
        if not login.username:
            raise ConfigError(
                config.file, f"{section}.username", "missing: an ACL line needs a user", "name the user"
            )
        if any(login.username == name for name, _ in users.values()):
            raise ConfigError(
                config.file, f"{section}.username", f"{login.username} is another role's user too",
                "give each role its own user",
            )  # fmt: skip
        users[role] = (login.username, password_file(settings).get_credentials()[1])
    db = int(parse_url(config.redis.url).get("db", 0) or 0)
    # `cluster = true` in [redis] is enough; --cluster prints the Cluster rules for a file that
    # does not say so yet (writing the ACL before switching the gateways over)
    for line in acl_lines(users, select=db != 0, cluster=args.cluster or config.redis.cluster):
        print(line)
    for role, (name, _) in users.items():
        print(f"# {name}: {_RUNS[role]}", file=sys.stderr)
    print("# save the lines as Redis's aclfile (no comments allowed there), then ACL LOAD", file=sys.stderr)
    return 0


_RUNS = {
    RedisRole.GATEWAY: "stand-in in every gateway (and settlement, when there is no [redis.settle])",
    RedisRole.SETTLE: "every settlement worker (authgw settle, and the gateways' own)",
    RedisRole.OPERATOR: "authgw standin load-card-status / status / reconcile / replay",
}


_COMMANDS = {
    "acl": _acl,
    "load-card-status": _load_card_status,
    "status": _status,
    "reconcile": _reconcile,
    "replay": _replay,
}
