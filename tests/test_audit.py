"""Operator audit records: the JSON-lines log, and `authgw standin replay` recorded with who ran it."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import socket
import stat
from pathlib import Path

import pytest
from helpers import PAN_VISA
from test_standin_cli import authgw, gateway_config_file
from test_standin_support import IMPATIENT, client, engine, request

from authgw.audit import AuditError, AuditRecord, Identity, JsonLinesAuditLog, new_record
from chaos.processes import free_port, start_redis
from standin import Reason

STREAM = "authgw:{journal:0}:decisions"


def test_a_record_survives_its_json_form() -> None:
    """to_json / from_json keep every field; the id sorts by time."""
    early = new_record("drain", "/authgw/pools/p/drain", Identity.from_certificate("operator"), {"pool": "p"})
    later = new_record("mode", "/authgw/mode", Identity.from_os(), now=early.at + dt.timedelta(seconds=1))
    assert AuditRecord.from_json(early.to_json()) == early
    assert early.record_id < later.record_id
    with pytest.raises(AuditError, match="not an audit record"):
        AuditRecord.from_json(b'{"action": "drain"}')


def test_the_log_appends_lines_readable_by_the_group_only(tmp_path: Path) -> None:
    """Each append adds one line (file created 0640); read() gives the records back in order."""
    log = JsonLinesAuditLog(tmp_path / "audit" / "audit.jsonl")
    records = [new_record(f"a{i}", "t", Identity.from_os()) for i in range(3)]
    for record in records:
        log.append(record)
    assert log.read() == records
    assert len(log.path.read_text().splitlines()) == 3
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o640


def test_an_unwritable_log_raises_naming_the_file(tmp_path: Path) -> None:
    """A log path that cannot be opened for append (here a directory) raises AuditError with its path."""
    with pytest.raises(AuditError, match=str(tmp_path)):
        JsonLinesAuditLog(tmp_path).append(new_record("a", "t", Identity.from_os()))


async def _local_backlog(port: int, journal: Path) -> list[str]:
    """Two stand-in decisions journaled locally while Redis is down; their ids."""
    async with engine(port, journal, redis_settings=IMPATIENT) as e:
        return [(await e.decide(request(PAN_VISA), Reason.FORCED)).decision_id for _ in range(2)]


async def _stream_ids(port: int) -> list[str]:
    r = client(port)
    try:
        return [f[b"decision_id"].decode() for _, f in await r.xrange(STREAM)]
    finally:
        await r.aclose()


async def test_replay_is_recorded_with_the_os_user_before_and_after(tmp_path: Path) -> None:
    """replay writes "started" then "finished" (exit 0) to audit.jsonl beside the journal, as user@host."""
    port = free_port()
    cfg = gateway_config_file(tmp_path, port, instance="gw-op")
    local = await _local_backlog(port, tmp_path / "gw-op.sqlite3")
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
    try:
        code, out, err = await authgw("standin", "replay", "--config", str(cfg))
        assert code == 0, err
        assert await _stream_ids(port) == local
    finally:
        await asyncio.to_thread(redis.stop)
    started, finished = JsonLinesAuditLog(tmp_path / "audit.jsonl").read()
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    assert (started.action, started.identity, started.target) == (
        "standin.replay",
        Identity(who, "os-user"),
        str(tmp_path / "gw-op.sqlite3"),
    )
    assert started.details["phase"] == "started"
    assert dict(finished.details) == {"phase": "finished", "exit_status": 0, "started": started.record_id}
    assert json.loads(out)["moved"] == 2


async def test_replay_does_nothing_when_its_record_cannot_be_written(tmp_path: Path) -> None:
    """With an audit log that cannot be appended to, replay exits 1 naming it and moves nothing."""
    port = free_port()
    cfg = gateway_config_file(tmp_path, port, instance="gw-op")
    await _local_backlog(port, tmp_path / "gw-op.sqlite3")
    unwritable = tmp_path / "a-directory"
    unwritable.mkdir()
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
    try:
        code, _, err = await authgw("standin", "replay", "--config", str(cfg), "--audit-log", str(unwritable))
        assert code == 1
        assert str(unwritable) in err and "nothing was done" in err
        assert await _stream_ids(port) == []
    finally:
        await asyncio.to_thread(redis.stop)


async def test_reading_commands_leave_no_record(redis_port: int, tmp_path: Path) -> None:
    """`standin status` writes nothing, so it leaves no audit record."""
    cfg = gateway_config_file(tmp_path, redis_port)
    code, _, err = await authgw("standin", "status", "--config", str(cfg))
    assert code == 0, err
    assert not (tmp_path / "audit.jsonl").exists()
