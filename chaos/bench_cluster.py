"""What a stand-in decision costs on one Redis and on a Redis Cluster, with and without WAIT.

    python -m chaos.bench_cluster [--rounds 5] [--decisions 300] [--concurrency 8]

One engine per configuration, all over TLS as the gateway's ACL user: one Redis (no WAIT), the
3-master + 3-replica Cluster without WAIT, and the Cluster with WAIT 1 (the default there).
Rounds interleave the configurations (each round runs every one, in turn), so a neighbour's load
on this shared machine touches them alike; each round decides `decisions` new cards' purchases
with `concurrency` in flight. Printed per configuration: median over the rounds (and the
spread, min-max) of the decision's latency p50 and p99 and of this process's CPU per decision.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chaos.pki import DevPki
from chaos.processes import start_redis
from chaos.redis_cluster import start_redis_cluster
from chaos.redis_users import RedisUsers
from standin import (
    Channel,
    JournalKind,
    Reason,
    RedisSettings,
    StandIn,
    StandInPolicy,
    StandInRequest,
    WindowLimit,
)
from standin.crypto import PanKeyring
from standin.redis_config import RedisRole
from standin.redis_io import make_redis_client
from standin.tokens import CardTokenizer

__all__ = ["DecideRound", "bench_engine", "configurations", "decide_round", "main", "patient"]

_KEY = os.urandom(32)


def _request(n: int, tag: str) -> StandInRequest:
    body = f"4{n:014d}"
    digits = [int(c) for c in body]
    total = sum(d if i % 2 else (2 * d if 2 * d < 10 else 2 * d - 9) for i, d in enumerate(reversed(digits)))
    pan = body + str((10 - total % 10) % 10)
    return StandInRequest(
        request_id=f"{tag}-{n}", acquirer_id="1001", pan=pan, amount_minor=1_000, currency="EUR",
        mcc="5411", channel=Channel.POS_CHIP, merchant_id="M-1", terminal_id="T-1",
        merchant_country="FR", pin_verified=True, cardholder_authenticated=False,
        transmitted_at=datetime.now(UTC),
    )  # fmt: skip


def patient(settings: RedisSettings) -> RedisSettings:
    """Deadlines no loaded machine reaches: every decision goes through Redis (none goes local)."""
    return dataclasses.replace(
        settings,
        command_deadline=timedelta(seconds=2),
        socket_timeout=timedelta(seconds=1),
        connect_timeout=timedelta(seconds=1),
        wait_timeout=timedelta(milliseconds=500),
    )


def bench_engine(settings: RedisSettings, db: Path) -> StandIn:
    big = WindowLimit(max_amount_minor=10**9, max_count=10**6)
    return StandIn(
        redis=make_redis_client(settings),
        policy=StandInPolicy(purchase=big, cash=big),
        tokenizer=CardTokenizer(_KEY),
        keyring=PanKeyring.of(_KEY),
        sqlite_path=db,
        instance="bench",
        redis_settings=settings,
        owns_redis=True,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class DecideRound:
    """One round of new cards' approvals, `concurrency` in flight."""

    p50_ms: float
    p99_ms: float
    cpu_us: float  # this process's CPU per decision
    per_s: float  # decisions per second of wall time


async def decide_round(e: StandIn, tag: str, decisions: int, concurrency: int) -> DecideRound:
    """`decisions` new cards' purchases, `concurrency` in flight; every one approved in Redis."""
    latencies: list[float] = []
    todo = iter(range(decisions))

    async def worker() -> None:
        for n in todo:
            t0 = time.perf_counter()
            d = await e.decide(_request(n, tag), Reason.ALL_POOLS_FAILED)
            latencies.append((time.perf_counter() - t0) * 1000)
            if not d.approved or d.journal is not JournalKind.REDIS:
                raise RuntimeError(f"bench decision not approved in Redis: {d.rule} {d.journal}")
            # (a WAIT past wait_timeout sends the engine local: the run stops rather than mix paths)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    wall = time.perf_counter() - wall0
    cpu = (time.process_time() - cpu0) / decisions * 1e6
    q = statistics.quantiles(latencies, n=100)
    return DecideRound(q[49], q[98], cpu, decisions / wall)


def configurations(users: RedisUsers, single_port: int, seed_port: int) -> dict[str, RedisSettings]:
    """The gateway's login on one Redis, on the Cluster without WAIT, and with WAIT 1 (its default)."""
    one = patient(users.settings(single_port, RedisRole.GATEWAY))
    seed = patient(users.settings(seed_port, RedisRole.GATEWAY))
    return {
        "one Redis": one,
        "cluster, no WAIT": dataclasses.replace(seed, cluster=True, wait_replicas=0),
        "cluster, WAIT 1": dataclasses.replace(seed, cluster=True, wait_replicas=1),
    }


async def _bench(args: argparse.Namespace, workdir: Path, console: Console) -> Table:
    users = RedisUsers(workdir / "users", DevPki(workdir / "pki"))
    single = start_redis(workdir / "single", tls=users.server_files(), aclfile=users.write_aclfile())
    cluster = await asyncio.to_thread(start_redis_cluster, workdir / "cluster", users=users)
    try:
        configs = configurations(users, single.port, cluster.nodes[0].port)
        engines = {
            name: bench_engine(cfg, workdir / f"{i}.db") for i, (name, cfg) in enumerate(configs.items())
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in configs}
        for e in engines.values():
            await e.start()
        try:
            for name, e in engines.items():  # warm: scripts loaded, slot maps read
                await decide_round(e, f"warm-{name}", 50, args.concurrency)
            for r in range(args.rounds):
                for name, e in engines.items():
                    done = await decide_round(e, f"r{r}-{name}", args.decisions, args.concurrency)
                    results[name].append((done.p50_ms, done.p99_ms, done.cpu_us))
                console.log(f"round {r + 1}/{args.rounds} done")
        finally:
            for e in engines.values():
                await e.close()
        return _table(results, args)
    finally:
        cluster.stop()
        single.stop()


def _table(results: dict[str, list[tuple[float, float, float]]], args: argparse.Namespace) -> Table:
    table = Table(
        title=f"stand-in decision cost, {args.rounds} interleaved rounds of {args.decisions} decisions, "
        f"{args.concurrency} in flight, TLS (median \\[min-max] over rounds)"
    )
    for col in ("configuration", "p50 ms", "p99 ms", "CPU µs/decision"):
        table.add_column(col, justify="right")
    for name, rows in results.items():
        cells = []
        for i in range(3):
            values = [row[i] for row in rows]
            cells.append(f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]")
        table.add_row(name, *cells)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench_cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    console = Console(width=max(110, shutil.get_terminal_size().columns))
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-cluster-"))
    try:
        table = asyncio.run(_bench(args, workdir, console))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
