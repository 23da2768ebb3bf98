"""`authgw standin ...`: stand-in's operator tools, reading the gateway's own config file.

`--config` names the gateway's TOML file: its `[standin]` section gives the stand-in file,
the Redis URL override and this instance's local journal, so `status`, `reconcile` and
`replay` look at exactly what the gateway writes. A stand-in file given directly (no
`[gateway]`, `[[pools]]` or `[standin] config`) still works, with the file's own paths.

The commands that write (`replay`, `replay --dead-letters`, `load-card-status`) are
operator writes, audited (authgw.audit): a record with the operating-system user who
ran the command and the host — the command talks to Redis as the gateway's own Redis
user, so no certificate says who the operator is — is appended and fsynced to a
JSON-lines file BEFORE the command does anything (no record, no write: exit 1), and a
second record gives the exit status. The file is `--audit-log FILE`, else
`$AUTHGW_AUDIT_LOG`, else `audit.jsonl` beside the instance's local journal (the
gateway's state directory, which `replay` must be able to write anyway). The record is
written from the config loader, the one step of `standin.cli` that runs after the
command line is parsed and before any write.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from authgw.audit import AuditError, AuditRecord, Identity, JsonLinesAuditLog, new_record
from authgw.config import ConfigError, read_toml
from gateway.config import load_config
from standin import StandInConfig
from standin import load_config as load_standin_config
from standin.cli import main as standin_main

__all__ = ["load_standin_for_operator", "main"]

_WRITES = frozenset({"replay", "load-card-status"})
_AUDIT_FLAG = "--audit-log"


def load_standin_for_operator(path: Path) -> StandInConfig:
    """The stand-in config the gateway configured by `path` uses (or `path` itself, a stand-in file)."""
    root = read_toml(path)
    is_gateway = any(root.has(k) for k in ("gateway", "pools", "routing", "etcd")) or root.table(
        "standin"
    ).has("config")
    if not is_gateway:
        return load_standin_config(path)
    cfg = load_config(path)
    if cfg.standin is None:
        raise ConfigError(
            str(path), "standin", "this gateway has no stand-in", 'add [standin] config = "..."'
        )
    return cfg.standin


def main(argv: list[str]) -> int:
    if argv[1:2] == ["policy"]:  # the live policy in etcd, audited there (gateway.policy_cmd)
        from gateway.policy_cmd import main as policy_main  # noqa: PLC0415 -- etcd client only when used

        return policy_main(argv[2:])
    argv, audit_log = _take_audit_flag(argv)
    if len(argv) < 2 or argv[1] not in _WRITES:
        return standin_main(argv, load=load_standin_for_operator)
    audit = _AuditedCommand(argv, audit_log)
    code = standin_main(argv, load=audit.load)
    audit.finish(code)
    return code


def _take_audit_flag(argv: list[str]) -> tuple[list[str], Path | None]:
    """argv without `--audit-log FILE` (or `--audit-log=FILE`), and that file."""
    rest: list[str] = []
    path: Path | None = None
    items = iter(argv)
    for item in items:
        if item == _AUDIT_FLAG:
            value = next(items, None)
            if value is None:
                print(f"authgw standin: {_AUDIT_FLAG} needs a file", file=sys.stderr)
                raise SystemExit(2)
            path = Path(value)
        elif item.startswith(f"{_AUDIT_FLAG}="):
            path = Path(item.split("=", 1)[1])
        else:
            rest.append(item)
    if path is None and os.environ.get("AUTHGW_AUDIT_LOG"):
        path = Path(os.environ["AUTHGW_AUDIT_LOG"])
    return rest, path


class _AuditedCommand:
    """Records a writing command: "started" before it writes, then its exit status."""

    def __init__(self, argv: list[str], audit_log: Path | None) -> None:
        self._argv = argv
        self._path = audit_log
        self._log: JsonLinesAuditLog | None = None
        self._started: AuditRecord | None = None

    def load(self, path: Path) -> StandInConfig:
        config = load_standin_for_operator(path)
        self._log = JsonLinesAuditLog(self._path or config.sqlite_path.parent / "audit.jsonl")
        record = new_record(
            f"standin.{self._argv[1]}",
            self._target(config),
            Identity.from_os(),
            {"phase": "started", "argv": self._argv[1:], "config": str(path)},
        )
        try:
            self._log.append(record)
        except AuditError as exc:
            raise ConfigError(
                str(self._log.path),
                "audit record",
                f"{exc}: nothing was done",
                f"make the file writable for this user, or give {_AUDIT_FLAG} FILE",
            ) from exc
        self._started = record
        return config

    def finish(self, code: int) -> None:
        """Record the outcome (nothing if the command never got as far as writing its first record)."""
        if self._started is None or self._log is None:
            return
        started = self._started
        record = new_record(
            started.action,
            started.target,
            started.identity,
            {"phase": "finished", "exit_status": code, "started": started.record_id},
        )
        try:
            self._log.append(record)
        except AuditError as exc:
            print(f"authgw standin: the outcome was not audited: {exc}", file=sys.stderr)

    def _target(self, config: StandInConfig) -> str:
        """What the command changes, from its own flags (standin.cli parses them again)."""
        flags = argparse.ArgumentParser(add_help=False)
        for name in ("--config", "--batch", "--local-journal", "--decision-id"):
            flags.add_argument(name)
        flags.add_argument("--dead-letters", action="store_true")
        flags.add_argument("file", nargs="?")
        known, _ = flags.parse_known_args(self._argv[2:])
        if self._argv[1] == "load-card-status":
            return f"card statuses from {known.file}"
        if known.dead_letters:
            return "journal dead letters"
        if known.local_journal:
            return str(Path(known.local_journal).resolve())
        return str(config.sqlite_path)
