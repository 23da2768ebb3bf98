"""`make bench-scale`: what this machine allows, the numbers of the README's capacity model.

    python -m chaos.bench_scale [--rounds 5] [--quick] [--output bench/scale.json]

Four sections, one after another, each with its own processes; inside a section the rounds
interleave the configurations (A B, A B, ...) so a neighbour's load touches them alike:

  issuer path  chaos.bench_rig (no proxies): `authgw serve --workers 1` and `--workers 2` in front
               of the same two issuer hosts; h2load closed loop (chaos.bench.measure_throughput):
               answers/s and the gateway processes' CPU per answer.
  stand-in     chaos.bench_cluster's engines over TLS: one Redis, the 3-master + 3-replica Cluster
               without WAIT and with WAIT 1 (its default). Per decision: decisions/s (8 in flight,
               one client process), the client's CPU, redis-server CPU (masters, replicas), and
               INFO commandstats: commands the client sent, commands run inside the scripts, and
               round trips (client commands, less each WAIT: it rides in its EVALSHA's packet).
  settlement   chaos.bench_settle's journal and worker (one Redis, one issuer simulator): advices/s
               and the worker's CPU per advice; a fresh Redis per round (3 rounds: each fills and
               drains a journal of its own).
  etcd         chaos.bench_etcd: one etcd, 4 health agents, 1 then 2 gateways (plaintext): etcd's
               gRPC messages received per second (its /metrics) and its CPU; the difference is
               one gateway's share, the rest divided by 4 one agent's (3 windows each).

Results: a table per section on stdout and bench/scale.json (machine, load average, git commit,
median and min-max over rounds). Numbers only, never a pass/fail on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chaos.bench import BenchOptions, describe_machine, measure_throughput
from chaos.bench_cluster import bench_engine, configurations, decide_round
from chaos.bench_cpu import cpu_seconds
from chaos.bench_etcd import measure_etcd
from chaos.bench_h2load import bench_request, grpc_frame
from chaos.bench_rig import BenchRig
from chaos.bench_settle import drain_journal, fill_journal
from chaos.bench_tables import spread
from chaos.pki import DevPki
from chaos.processes import ManagedProcess, free_port, start_authgw, start_redis
from chaos.redis_cluster import LocalCluster, start_redis_cluster
from chaos.redis_users import RedisUsers

__all__ = ["ScaleOptions", "main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "scale.json"
_HARNESS = {"info", "config|resetstat", "replconf", "ping", "cluster|nodes", "cluster|info", "auth"}


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    """How many rounds of what, and how long."""

    rounds: int = 5
    h2load_s: float = 5.0
    decisions: int = 300
    concurrency: int = 8
    settle_rounds: int = 3
    settle_decisions: int = 5_000
    etcd_rounds: int = 3
    etcd_window_s: float = 8.0
    output: Path = RESULTS


def _cell(s: Mapping[str, Any]) -> str:
    return f"{s['median']:,} [{s['min']:,}-{s['max']:,}]"


def _table(title: str, rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> Table:
    table = Table(title=f"{title} (median [min-max] over rounds)")
    table.add_column("configuration")
    for col in columns:
        table.add_column(col, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(_cell(row[c]) if isinstance(row[c], dict) else str(row[c]) for c in columns))
    return table


# -- issuer path ---------------------------------------------------------------------------------


async def _issuer_path(opts: ScaleOptions, workdir: Path, console: Console) -> dict[str, Any]:
    body = workdir / "authorize.grpc"
    body.write_bytes(grpc_frame(bench_request().SerializeToString()))
    rig = BenchRig(workdir / "rig", proxies=False)
    h2 = BenchOptions(h2load_s=opts.h2load_s)
    try:
        await asyncio.to_thread(rig.start)
        two = await asyncio.to_thread(rig.extra_gateway, "gw-2-workers", {"enabled": False}, workers=2)
        targets = {
            "1 process": rig.targets["authgw"],
            "2 processes": replace(rig.targets["authgw"], name="authgw-2w", address=two.address, process=two),
        }
        for target in targets.values():
            await rig.wait_ready(target)
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in targets}
        for r in range(opts.rounds):
            for name, target in targets.items():
                t = await measure_throughput(rig, target, body, h2)
                runs[name].append((t.rps, t.cpu_s_per_1k * 1000, t.failed_share))
            console.log(f"issuer path: round {r + 1}/{opts.rounds}: {_last(runs)}")
    finally:
        await asyncio.to_thread(rig.stop)
    return {
        "method": f"h2load -c {h2.clients} -m {h2.streams}, {opts.h2load_s:.0f} s per target per round, "
        "plaintext, two issuer hosts (uvloop) on the same machine; CPU of the gateway's processes only",
        "rounds": opts.rounds,
        "gateways": {
            name: {
                "answers_per_s": spread([row[0] for row in rows], 0),
                "cpu_us_per_answer": spread([row[1] for row in rows], 0),
                "failed_share": spread([row[2] for row in rows], 4),
                "cores_busy": spread([row[0] * row[1] / 1e6 for row in rows], 2),
            }
            for name, rows in runs.items()
        },
    }


def _last(runs: Mapping[str, Sequence[tuple[float, ...]]]) -> str:
    return ", ".join(f"{name} {rows[-1][0]:,.0f}/s {rows[-1][1]:,.0f} µs" for name, rows in runs.items())


# -- stand-in ------------------------------------------------------------------------------------


def _commandstats(cli: Callable[..., str], port: int) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line.removeprefix("cmdstat_").partition(":")
            out[name] += int(fields.split(",", 1)[0].removeprefix("calls="))
    return out


@dataclass(frozen=True, slots=True)
class _Servers:
    """Whose CPU and commandstats a configuration's decisions cost."""

    masters: list[ManagedProcess]
    replicas: list[ManagedProcess]

    def cpu(self) -> tuple[float, float]:
        return sum(cpu_seconds(p.pid) for p in self.masters), sum(cpu_seconds(p.pid) for p in self.replicas)


async def _standin(opts: ScaleOptions, workdir: Path, console: Console) -> dict[str, Any]:
    users = RedisUsers(workdir / "users", DevPki(workdir / "pki"))
    single = start_redis(workdir / "single", tls=users.server_files(), aclfile=users.write_aclfile())
    cluster: LocalCluster | None = None
    try:
        cluster = await asyncio.to_thread(start_redis_cluster, workdir / "cluster", users=users)
        master_ports = set(cluster.masters())
        on_cluster = _Servers(
            [n for n in cluster.nodes if n.port in master_ports],
            [n for n in cluster.nodes if n.port not in master_ports],
        )
        servers = {"one Redis": _Servers([single], [])}
        configs = configurations(users, single.port, cluster.nodes[0].port)
        engines = {
            name: bench_engine(cfg, workdir / f"{i}.db") for i, (name, cfg) in enumerate(configs.items())
        }
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        for e in engines.values():
            await e.start()
        try:
            for name, e in engines.items():  # scripts loaded on every master, slot maps read
                await decide_round(e, f"warm-{name}", 100, opts.concurrency)
            for r in range(opts.rounds):
                for name, e in engines.items():
                    srv = servers.get(name, on_cluster)
                    for p in srv.masters:
                        await asyncio.to_thread(cluster.cli, p.port, "CONFIG", "RESETSTAT")
                    cpu0 = srv.cpu()
                    done = await decide_round(e, f"r{r}-{name}", opts.decisions, opts.concurrency)
                    cpu1 = srv.cpu()
                    calls: Counter[str] = Counter()
                    for p in srv.masters:
                        calls.update(await asyncio.to_thread(_commandstats, cluster.cli, p.port))
                    n = opts.decisions
                    rows[name].append(
                        {
                            "per_s": done.per_s,
                            "p50_ms": done.p50_ms,
                            "p99_ms": done.p99_ms,
                            "client_cpu_us": done.cpu_us,
                            "master_cpu_us": (cpu1[0] - cpu0[0]) / n * 1e6,
                            "replica_cpu_us": (cpu1[1] - cpu0[1]) / n * 1e6,
                            "calls": {k: v / n for k, v in calls.items() if k not in _HARNESS},
                        }
                    )
                console.log(
                    f"stand-in: round {r + 1}/{opts.rounds}: "
                    + ", ".join(f"{k} {v[-1]['per_s']:,.0f}/s" for k, v in rows.items())
                )
        finally:
            for e in engines.values():
                await e.close()
    finally:
        if cluster is not None:
            cluster.stop()
        single.stop()
    return {
        "method": f"{opts.decisions} new cards' approvals per configuration per round, {opts.concurrency} in "
        "flight from one client process (uvloop), TLS and the gateway's ACL user; redis-server CPU read "
        "from /proc; commands from INFO commandstats on every master",
        "rounds": opts.rounds,
        "configurations": {name: _standin_doc(r) for name, r in rows.items()},
    }


_CLIENT_SENT = {"evalsha", "wait", "script|load", "command|getkeys", "command", "cluster|slots"}


def _standin_doc(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    last = rounds[-1]["calls"]  # the same every round, decision for decision (printed per round too)
    sent = {k: round(v, 2) for k, v in last.items() if k in _CLIENT_SENT}
    inside = {k: round(v, 2) for k, v in last.items() if k not in _CLIENT_SENT}
    doc: dict[str, Any] = {
        key: spread([r[key] for r in rounds], 2 if key.endswith("_ms") else 0)
        for key in ("per_s", "p50_ms", "p99_ms", "client_cpu_us", "master_cpu_us", "replica_cpu_us")
    }
    doc["commands_sent_per_decision"] = sent
    doc["commands_in_scripts_per_decision"] = inside
    doc["round_trips_per_decision"] = round(sum(sent.values()) - sent.get("wait", 0.0), 2)
    doc["redis_commands_per_decision"] = round(sum(last.values()), 2)
    return doc


# -- settlement ----------------------------------------------------------------------------------


async def _settlement(opts: ScaleOptions, workdir: Path, console: Console) -> dict[str, Any]:
    port = free_port()
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", "a1", "--uvloop"]
    sim = await asyncio.to_thread(start_authgw, workdir, "sim-settle", args, port)
    results = []
    try:
        for r in range(opts.settle_rounds):
            redis = await asyncio.to_thread(start_redis, workdir / f"settle-{r}")
            try:
                url = f"redis://127.0.0.1:{redis.port}/0"
                token_key, pan_key = os.urandom(32), os.urandom(32)
                n = opts.settle_decisions
                await fill_journal(url, n, max(1, n // 3), token_key, pan_key, first=r * n)
                results.append(await drain_journal(url, sim, pan_key, decisions=n, progress=False))
            finally:
                redis.stop()
            console.log(f"settlement: round {r + 1}/{opts.settle_rounds}: {results[-1].per_s:,.0f} advices/s")
    finally:
        sim.stop()
    return {
        "method": f"a journal of {opts.settle_decisions:,} decisions (a quarter declined) on one Redis (AOF, "
        "fsync always), one worker (uvloop, 128 in flight, pacing ceiling 20,000/s) advising one issuer "
        "simulator; the worker's process CPU",
        "rounds": opts.settle_rounds,
        "advices_per_s": spread([r.per_s for r in results], 0),
        "cpu_us_per_advice": spread([r.cpu_us_per_advice for r in results], 0),
    }


# -- the run -------------------------------------------------------------------------------------


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


async def _etcd(opts: ScaleOptions, workdir: Path, console: Console) -> dict[str, Any]:
    return await measure_etcd(workdir, console, rounds=opts.etcd_rounds, window_s=opts.etcd_window_s)


def _write(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def run_scale(opts: ScaleOptions, workdir: Path, console: Console) -> dict[str, Any]:
    """Every section in turn; the results document."""
    doc: dict[str, Any] = {
        "machine": describe_machine(),
        "commit": _commit(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": _loadavg(),
    }
    console.rule(f"authgw bench-scale: {doc['machine']}; load average {doc['load_average_start']}")
    started = time.monotonic()
    for key in ("issuer_path", "standin", "settlement", "etcd"):
        (workdir / key).mkdir()
    sections = {"issuer_path": _issuer_path, "standin": _standin, "settlement": _settlement, "etcd": _etcd}
    for key, section in sections.items():
        doc[key] = await section(opts, workdir / key, console)
        _write(opts.output.with_suffix(".partial.json"), doc)  # a later section's failure keeps these
    doc["load_average_end"] = _loadavg()
    doc["duration_s"] = round(time.monotonic() - started)
    return doc


def print_tables(doc: Mapping[str, Any], console: Console) -> None:
    console.print(
        _table(
            "issuer path, h2load closed loop",
            doc["issuer_path"]["gateways"],
            ("answers_per_s", "cpu_us_per_answer", "cores_busy", "failed_share"),
        )
    )
    st = doc["standin"]["configurations"]
    cols = ("per_s", "client_cpu_us", "master_cpu_us", "replica_cpu_us", "p50_ms", "p99_ms")
    console.print(_table("stand-in decisions", st, cols))
    for name, c in st.items():
        console.print(
            f"{name}: per decision {c['round_trips_per_decision']} round trips, "
            f"{c['redis_commands_per_decision']} Redis commands; sent {c['commands_sent_per_decision']}, "
            f"in scripts {c['commands_in_scripts_per_decision']}"
        )
    s = doc["settlement"]
    console.print(
        f"settlement: {_cell(s['advices_per_s'])} advices/s, {_cell(s['cpu_us_per_advice'])} µs/advice"
    )
    e = doc["etcd"]
    console.print(
        f"etcd: {_cell(e['per_gateway_messages_per_s'])} messages/s per gateway, "
        f"{_cell(e['per_agent_messages_per_s'])} per agent; "
        f"by method with 1 gateway {e['by_method_1_gateway']}"
    )
    console.print(f"load average: start {doc['load_average_start']}, end {doc['load_average_end']}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.bench_scale", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (issuer path, stand-in)")
    p.add_argument("--quick", action="store_true", help="2 rounds everywhere, shorter loads (a smoke run)")
    p.add_argument("--output", type=Path, default=RESULTS, help="results JSON path")
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    opts = ScaleOptions(rounds=a.rounds, output=a.output)
    if a.quick:
        opts = replace(
            opts, rounds=2, h2load_s=2.0, decisions=200, settle_rounds=1, settle_decisions=5_000,
            etcd_rounds=1, etcd_window_s=4.0,
        )  # fmt: skip
    console = Console(width=max(140, shutil.get_terminal_size().columns))
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-scale-"))
    import uvloop  # noqa: PLC0415 (as the gateway and the settlement worker run)

    try:
        doc = uvloop.run(run_scale(opts, workdir, console))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_tables(doc, console)
    _write(opts.output, doc)
    opts.output.with_suffix(".partial.json").unlink(missing_ok=True)
    console.print(f"results: {opts.output} ({doc['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
