"""Redis round trips and time of one stand-in decision, with and without the fleet-wide risk steps.

One engine against a private Redis (AOF, fsync always) on loopback decides sequentially,
so each decision's round trips are its own: Redis's INFO commandstats counts EVALSHA
calls (one per script: velocity, budget reserve and release, DECIDE, APPEND) between
CONFIG RESETSTAT and the end of each batch. Policies, interleaved over rounds:

    baseline   the default policy (no budget, no velocity)
    budget     one exposure budget (8 shards), never reached
    risk       the budget and merchant + terminal velocity windows, never reached

Per policy, a batch of approvals (fresh cards) and a batch of declines by the card's
amount limit (one card over its window); the table gives the median over rounds and the
spread (min-max) of the per-decision time, and the EVALSHA calls per decision.

    python -m chaos.bench_standin_trips [--decisions 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis, RedisCluster
from rich.console import Console
from rich.table import Table

from chaos.processes import start_redis
from standin import (
    Channel,
    RedisSettings,
    StandIn,
    StandInPolicy,
    StandInRequest,
    WindowLimit,
    make_redis_client,
)
from standin.crypto import PanKeyring
from standin.policy import ExposureBudget, Velocity, VelocityLimit
from standin.tokens import CardTokenizer
from standin.types import Reason

__all__ = ["main"]

_BASE = StandInPolicy(purchase=WindowLimit(2_000, 100))  # a card's third 1,000 passes its 2,000: 61
_BUDGET = ExposureBudget("bench", 10**12, period=timedelta(hours=1))
_VELOCITY = Velocity(
    merchant={c: VelocityLimit(10**6, 10**12) for c in Channel},
    terminal={c: VelocityLimit(10**6, 10**12) for c in Channel},
)
POLICIES = {
    "baseline": _BASE,
    "budget": replace(_BASE, exposure_budgets=(_BUDGET,)),
    "risk": replace(_BASE, exposure_budgets=(_BUDGET,), velocity=_VELOCITY),
}


def _pan(n: int) -> str:
    body = f"4{n:014d}"
    total = 0
    for i, ch in enumerate(reversed(body + "0")):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _request(n: int, pan: str) -> StandInRequest:
    return StandInRequest(
        request_id=f"trip-{n}", acquirer_id="1001", pan=pan, amount_minor=1_000, currency="EUR", mcc="5411",
        channel=Channel.POS_CHIP, merchant_id=f"M{n % 1000}", terminal_id=f"T{n % 10}", merchant_country="FR",
        pin_verified=True, cardholder_authenticated=False, transmitted_at=datetime.now(UTC),
    )  # fmt: skip


async def _batch(
    e: StandIn, admin: Redis | RedisCluster, requests: list[StandInRequest]
) -> tuple[float, float, int]:
    """(ms per decision, EVALSHA per decision, approvals)."""
    await admin.config_resetstat()
    start = time.perf_counter()
    approved = sum([(await e.decide(r, Reason.ALL_POOLS_FAILED)).approved for r in requests])
    elapsed = time.perf_counter() - start
    calls = int((await admin.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))
    return elapsed * 1000 / len(requests), calls / len(requests), approved


async def _run(port: int, workdir: Path, decisions: int, rounds: int, console: Console) -> Table:
    two_s = timedelta(seconds=2)
    settings = RedisSettings(url=f"redis://127.0.0.1:{port}/0", command_deadline=two_s, socket_timeout=two_s)
    admin = make_redis_client(settings)
    results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    n = 0
    for r in range(rounds):
        for name, policy in POLICIES.items():
            async with StandIn(
                redis=make_redis_client(settings), policy=policy, tokenizer=CardTokenizer(bytes(32)),
                keyring=PanKeyring.of(bytes(range(32))), sqlite_path=workdir / f"{name}-{r}.db",
                instance="bench", redis_settings=settings, owns_redis=True,
            ) as e:  # fmt: skip
                await e.decide(_request(n := n + 1, _pan(n)), Reason.ALL_POOLS_FAILED)  # scripts loaded
                fresh = [_request(n + i, _pan(n + i)) for i in range(1, decisions + 1)]
                n += decisions
                over = _pan(n := n + 1)
                declines = [_request(n + i, over) for i in range(1, decisions + 3)]
                n += decisions + 2
                results.setdefault((name, "approve"), []).append(await _batch(e, admin, fresh))
                await e.decide(declines[0], Reason.ALL_POOLS_FAILED)
                await e.decide(declines[1], Reason.ALL_POOLS_FAILED)  # the card's window is now full
                results.setdefault((name, "decline"), []).append(await _batch(e, admin, declines[2:]))
        console.log(f"round {r + 1}/{rounds} done")
    await admin.aclose()
    table = Table(
        title=f"one stand-in decision, sequential, {decisions} per batch, {rounds} interleaved rounds"
    )
    for col in ("policy", "outcome", "ms/decision median", "spread", "evalsha/decision", "approved/batch"):
        table.add_column(col, justify="right")
    for (name, outcome), rows in results.items():
        ms = [row[0] for row in rows]
        table.add_row(
            name, outcome, f"{statistics.median(ms):.3f}", f"{min(ms):.3f}-{max(ms):.3f}",
            f"{statistics.median(row[1] for row in rows):.2f}", str(rows[0][2]),
        )  # fmt: skip
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench_standin_trips", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console(width=max(110, shutil.get_terminal_size().columns))
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-trips-"))
    redis = start_redis(workdir / "redis")
    try:
        table = asyncio.run(_run(redis.port, workdir, args.decisions, args.rounds, console))
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
