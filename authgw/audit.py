"""Who changed what, and when: one audit record per operator write.

Every operator write — drain, undrain, mode, stand-in replays and card-status
loads, later policy changes — leaves an `AuditRecord`: the action, what it
changed, the operator's `Identity`, the time, and a time-ordered unique id.
Where the record goes depends on what the write touches:

- **etcd writes** (drain, undrain, mode: `health.admin`): the record is a key
  beside the membership, `<root>-audit/<operator>/<record id>`, written in the
  SAME etcd transaction as the change. A change without its record cannot
  happen, and a write etcd refuses leaves no record. The identity is the CN of
  the client certificate the command used, which etcd itself authenticated
  (`--client-cert-auth`), and etcd's roles let an operator write records only
  under its own name: a record cannot claim another operator. Who can read them:
  operators and etcd's root (`authgw audit`); gateways and agents cannot (the
  records are outside `<root>/`, so gateways neither read nor watch them). Who
  can erase them: etcd's root, and each operator its OWN records (etcd has no
  append-only permission: write covers delete); an erasure is itself a revision
  in etcd's history until compaction. Banks that need more ship the prefix to
  their log store (`authgw audit --json`, or a watch of the prefix).
- **Stand-in replays and card-status loads** (`gateway/standin_cmd.py`): they
  write to Redis and SQLite, where no certificate of the operator is involved
  (the command uses the gateway's own Redis user). The identity is the operating
  system user who ran the command, and the host (`Identity.from_os`); the record
  is a line of a JSON-lines file (`JsonLinesAuditLog`), appended and fsynced
  BEFORE the replay runs (no record, no replay), then a second line with the
  outcome. Who can read or erase it: whoever the file's permissions allow (it is
  created 0640); make it append-only (`chattr +a`, which only root can lift) or
  forward it to syslog where that matters.

Records carry no card data: targets are keys, pools, files and decision ids.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

__all__ = ["AuditError", "AuditRecord", "Identity", "IdentitySource", "JsonLinesAuditLog", "new_record"]

IdentitySource = Literal["certificate", "os-user"]
"""How the identity is known: a client certificate a server verified, or what the OS says."""


class AuditError(Exception):
    """An audit record could not be written or read (the operator's write must not go ahead)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who did it, and how we know."""

    name: str
    """The certificate's CN (etcd's user), or `user@host` for an OS user."""
    source: IdentitySource

    @classmethod
    def from_certificate(cls, common_name: str) -> Identity:
        """The identity a server authenticated from our client certificate (its CN)."""
        return cls(common_name, "certificate")

    @classmethod
    def from_os(cls) -> Identity:
        """The operating-system user running this process, on this host (not verified by any peer)."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry, no LOGNAME: the uid still says who
            user = f"uid{os.getuid()}"
        return cls(f"{user}@{socket.gethostname()}", "os-user")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One operator write."""

    record_id: str
    """Unique and time-ordered: `<UTC time>-<random>`, so a prefix listing is chronological."""
    action: str
    """What was done: drain, undrain, mode, standin.replay, ..."""
    target: str
    """What it changed: an etcd key, a journal, a file."""
    identity: Identity
    at: dt.datetime
    """When (UTC)."""
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Action-specific facts (the new mode, the outcome, ...); JSON values only."""

    def to_json(self) -> bytes:
        """One line of JSON (no newline inside)."""
        return json.dumps(
            {
                "record_id": self.record_id,
                "at": self.at.isoformat(),
                "action": self.action,
                "target": self.target,
                "identity": self.identity.name,
                "identity_source": self.identity.source,
                "details": dict(self.details),
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> AuditRecord:
        """Parse `to_json`'s output; AuditError naming what is wrong."""
        try:
            raw = json.loads(data)
            source = _identity_source(raw["identity_source"])
            return cls(
                record_id=str(raw["record_id"]),
                action=str(raw["action"]),
                target=str(raw["target"]),
                identity=Identity(str(raw["identity"]), source),
                at=dt.datetime.fromisoformat(raw["at"]),
                details=MappingProxyType(dict(raw.get("details") or {})),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"not an audit record: {exc}") from exc


def _identity_source(value: object) -> IdentitySource:
    if value == "certificate":
        return "certificate"
    if value == "os-user":
        return "os-user"
    raise ValueError(f"unknown identity_source {value!r}")


def new_record(
    action: str,
    target: str,
    identity: Identity,
    details: Mapping[str, Any] | None = None,
    *,
    now: dt.datetime | None = None,
) -> AuditRecord:
    """A record stamped now, with a fresh time-ordered id."""
    at = now or dt.datetime.now(dt.UTC)
    record_id = f"{at.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(4)}"
    return AuditRecord(record_id, action, target, identity, at, MappingProxyType(dict(details or {})))


class JsonLinesAuditLog:
    """An append-only file of records, one JSON object per line, on disk before `append` returns.

    Each append opens the file with O_APPEND (concurrent writers never interleave a
    line), writes one line and fsyncs it. Blocking: from an event loop, call it
    through `asyncio.to_thread`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: AuditRecord) -> None:
        """Write `record` durably; AuditError naming the file if it cannot be."""
        line = record.to_json() + b"\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot append to audit log {self.path}: {exc.strerror or exc}") from exc

    def read(self) -> list[AuditRecord]:
        """Every record in the file, oldest first (an absent file has none)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditError(f"cannot read audit log {self.path}: {exc.strerror or exc}") from exc
        return [AuditRecord.from_json(line) for line in text.splitlines() if line.strip()]
