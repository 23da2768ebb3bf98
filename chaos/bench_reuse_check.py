"""What the issuer path's reused-id check costs (gateway/reuse_check.py): off, and on.

    python -m chaos.bench_reuse_check [--rounds 7] [--calls 2000]

The check runs before an issuer-path request only while stand-in decisions wait for their advice.
This measures, in this process, what the gateway does at that point for one request, with the
check off (steady state: `may_refuse_reuse()` is a flag) and on (the request converted to
stand-in's type, its token and digest, an HMGET of its record on a private Redis over loopback;
the local SQLite journal is read too only while it holds entries, not here). Interleaved rounds
of `calls` sequential requests, each a new request id on one of a few hundred cards (the record
is absent: the common case); per mode
the median and spread (min-max) of the wall time and of this process's CPU time per request.
Redis's own CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from authgw.v1 import authorization_pb2 as pb
from chaos.bench_tables import spread_text
from chaos.load import CardMix
from chaos.processes import start_redis
from chaos.topology import standin_toml
from gateway.reuse_check import ReuseCheck
from gateway.standin_link import StandInFallback
from standin import StandIn, load_config

_ids = itertools.count()


async def _round(fallback: StandInFallback, mix: CardMix, calls: int) -> tuple[float, float]:
    """(wall us, CPU us) per request of `calls` issuer-path checks."""
    requests: list[pb.AuthorizeRequest] = []
    for _ in range(calls):
        req = mix.request()
        req.request_id = f"brc-{next(_ids)}"
        requests.append(req)
    wall, cpu = time.perf_counter(), time.process_time()
    for req in requests:
        if fallback.may_refuse_reuse() and await fallback.refuses_reuse(req, time.monotonic() + 2.0):
            raise RuntimeError(f"refused a fresh request id: {req.request_id}")
    return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


async def run(rounds: int, calls: int, workdir: Path) -> dict[str, list[tuple[float, float]]]:
    """{mode: [(wall us, CPU us) per round]}."""
    redis = start_redis(workdir / "redis")
    path = workdir / "standin.toml"
    path.write_text(standin_toml(f"redis://127.0.0.1:{redis.port}/0"))
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    engine = StandIn.from_config(load_config(path))
    fallbacks = {"off": StandInFallback(engine, reuse_check=False), "on": StandInFallback(engine)}
    mix = CardMix(cards=500, seed=5)
    try:
        async with engine:
            fallbacks["on"].reuse = ReuseCheck(engine, recent_s=float("inf"))  # on for the whole run
            fallbacks["on"].reuse.note_standin()
            await fallbacks["on"].reuse.look()  # the local journal is empty: Redis only
            await _round(fallbacks["on"], mix, calls // 4)  # warm-up: connections, SQLite, caches
            for r in range(rounds):
                for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    results[mode].append(await _round(fallbacks[mode], mix, calls))
    finally:
        redis.stop()
    return results


def _table(results: dict[str, list[tuple[float, float]]], calls: int) -> Table:
    table = Table(title=f"issuer-path reused-id check, {calls} requests x {len(results['off'])} rounds")
    for column in ("check", "wall us/request, median [min-max]", "CPU us/request, median [min-max]"):
        table.add_column(column)
    for mode, rows in results.items():
        table.add_row(
            mode, spread_text([w for w, _ in rows], ".1f"), spread_text([c for _, c in rows], ".1f")
        )
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench_reuse_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (each: off and on)")
    parser.add_argument("--calls", type=int, default=2000, help="requests per mode and round")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-reuse-"))
    try:
        results = asyncio.run(run(args.rounds, args.calls, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    Console(width=120).print(_table(results, args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
