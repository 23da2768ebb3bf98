"""Gathering what a run left, for the PAN scan: Redis contents, SQLite rows, files, log records.

Each gatherer returns (where, content) pairs; `where` names the source in a finding.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from chaos.processes import start_redis

Blob = tuple[str, str | bytes]


@dataclass
class Outputs:
    """What left the processes, by category: (where, content) pairs."""

    logs: list[Blob] = field(default_factory=list)
    spans: list[Blob] = field(default_factory=list)
    metrics: list[Blob] = field(default_factory=list)
    errors: list[Blob] = field(default_factory=list)
    redis: list[Blob] = field(default_factory=list)
    files: list[Blob] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    """How much each path did (the scan means something only if these are not zero)."""


async def dump_redis(port: int) -> list[Blob]:
    """Every key and value of every database, by type (scores, groups and consumers too), and DUMP bytes."""
    r = Redis(port=port)
    out: list[Blob] = []
    try:
        for db in range(16):
            await r.execute_command("SELECT", db)
            async for key in r.scan_iter(match="*", count=1000):
                where = f"redis db{db} {key!r}"
                kind = (await r.type(key)).decode()
                out.append((where + " key", key))
                out.append((where + " DUMP", await r.dump(key) or b""))
                out.append((where + " value", repr(await _value(r, key, kind)).encode()))
    finally:
        await r.aclose()
    return out


async def _value(r: Redis, key: bytes, kind: str) -> Any:
    reads: dict[str, Callable[[], Awaitable[Any]]] = {
        "string": lambda: r.get(key),
        "hash": lambda: r.hgetall(key),
        "zset": lambda: r.zrange(key, 0, -1, withscores=True),
        "set": lambda: r.smembers(key),
        "list": lambda: r.lrange(key, 0, -1),
    }
    if kind in reads:
        return await reads[kind]()
    if kind == "stream":
        groups = await r.xinfo_groups(key)
        consumers = [await r.xinfo_consumers(key, g["name"]) for g in groups]
        return [await r.xrange(key), groups, consumers]
    return kind


def sqlite_text(path: Path) -> str:
    """Every row of every table of an SQLite file, as text (what a reader of the file sees)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))
    finally:
        db.close()


def local_backlog(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM decisions WHERE moved_at_ms IS NULL").fetchone()[0])
    finally:
        db.close()


def run_cli(workdir: Path, *args: str) -> str:
    """`authgw <args>` as a process: its exit code, stdout and stderr as one text."""
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        check=False,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


class LogRecords(logging.Handler):
    """Keeps every Python log record formatted in full (no masking: what a careless handler would write)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(levelname)s %(name)s %(message)s").format(record))


async def reloaded(workdir: Path, name: str, files: list[Path], appendonly: bool) -> list[Blob]:
    """Load Redis persistence files into a fresh Redis and dump it: what a thief of the files reads."""
    target = workdir / name
    target.mkdir()
    for f in files:
        dest = target / f.relative_to(f.parents[1] if f.parent.name == "appendonlydir" else f.parent)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    proc = await asyncio.to_thread(start_redis, target, None, appendonly)
    try:
        return [(f"{name}: {w}", b) for w, b in await dump_redis(proc.port)]
    finally:
        await asyncio.to_thread(proc.stop)


async def persistence(workdir: Path, out: Outputs) -> None:
    redis_dir = workdir / "redis"
    aof = sorted((redis_dir / "appendonlydir").iterdir())
    out.counts["aof files"] = len(aof)
    out.redis += await reloaded(workdir, "reloaded-rdb", [redis_dir / "dump.rdb"], False)
    out.redis += await reloaded(workdir, "reloaded-aof", aof, True)


def collect_files(out: Outputs, root: Path) -> None:
    """Process logs (every *.log: gateway, simulators, Redis), every file under `root` as raw bytes,
    and every SQLite file's rows."""
    out.logs += [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*.log"))]
    out.files = [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]
    out.files += [(f"sqlite rows {p.name}", sqlite_text(p)) for p in sorted(root.rglob("*.sqlite3"))]
