"""Settlement drain rate: `python -m chaos.bench_settle` (make bench-settle).

A private Redis (AOF, fsync always, as production must run it) holds a journal of
N stand-in decisions (default 100,000: a quarter declined, PANs encrypted like the
engine's, cards mostly distinct with a few decisions each); an issuer simulator
(`python -m chaos issuer-sim`, its own process, in-memory ledger) takes the advices. One
settlement worker, in this process, drains the journal through the gateway's gRPC
sender; the benchmark prints the drain rate and checks the simulator's report:
every decision advised exactly once, approvals applied, declines never.

The pacing ceiling is raised (--rate, default 20,000/s) so the figure is what the
worker can do; in production the default ceiling of 500/s protects the issuer.
Numbers only, no pass/fail on time: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_authgw, start_redis
from chaos.sim_control import SimControl
from gateway.config import parse_config
from gateway.router import Router
from gateway.settlement.sender import GrpcAdviceSender
from standin import JournalKind, JournalSettings, PanKeyring, Reason, ResponseCode, StandInDecision
from standin.entry import encode_entry
from standin.redis_io import make_redis_client
from standin.settings import RedisSettings
from standin.settlement import Settlement
from standin.settlement.settings import SettlementSettings
from standin.tokens import CardTokenizer
from standin.types import Channel, StandInRequest

__all__ = ["DrainResult", "drain_journal", "fill_journal", "main"]

_PIPELINE = 1000


def _luhn_pan(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    for check in "0123456789":
        total = 0
        for i, ch in enumerate(reversed(body + check)):
            d = ord(ch) - 48
            if i % 2:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return body + check
    raise AssertionError("unreachable")


def _entry(
    i: int, pan: str, tokenizer: CardTokenizer, keyring: PanKeyring, decided: datetime
) -> tuple[str, dict[str, str]]:
    approved = i % 4 != 0
    request = StandInRequest(
        request_id=f"bench-{i}", acquirer_id="1001", pan=pan, amount_minor=100 + i % 5000, currency="EUR",
        mcc="5411", channel=Channel.POS_CHIP, merchant_id="M-bench", terminal_id="T-1", merchant_country="FR",
        pin_verified=True, cardholder_authenticated=False, transmitted_at=decided,
    )  # fmt: skip
    decision = StandInDecision(
        decision_id=f"{i:032x}", request_id=request.request_id, approved=approved,
        response_code=ResponseCode.APPROVED if approved else ResponseCode.EXCEEDS_AMOUNT_LIMIT,
        approval_code="BENCH1" if approved else "", rule="approved" if approved else "limit.amount.purchase",
        risk_tier="low", reason=Reason.ALL_POOLS_FAILED, decided_at=decided + timedelta(microseconds=i),
        gateway_instance="gw-bench", journal=JournalKind.REDIS,
    )  # fmt: skip
    token = tokenizer.token(pan)
    return token, encode_entry(request, decision, card_token=token, keyring=keyring, trace_context="")


async def fill_journal(
    redis_url: str, n: int, cards: int, token_key: bytes, pan_key: bytes, *, first: int = 0
) -> float:
    """XADD n entries (decisions first .. first + n - 1) to partition 0, pipelined; returns seconds spent."""
    started = time.monotonic()
    rng = random.Random(7)
    pans = [_luhn_pan(rng) for _ in range(cards)]
    tokenizer, keyring = CardTokenizer(token_key), PanKeyring.of(pan_key)
    redis = make_redis_client(RedisSettings(url=redis_url, socket_timeout=timedelta(seconds=10)))
    decided = datetime.now(UTC)
    try:
        await redis.xgroup_create("authgw:{journal:0}:decisions", "settlement", id="0", mkstream=True)
        for start in range(first, first + n, _PIPELINE):
            pipe = redis.pipeline(transaction=False)
            for i in range(start, min(first + n, start + _PIPELINE)):
                _, fields = _entry(i, pans[i % cards], tokenizer, keyring, decided)
                pipe.xadd("authgw:{journal:0}:decisions", fields)  # type: ignore[arg-type]
            await pipe.execute()
    finally:
        await redis.aclose()
    return time.monotonic() - started


@dataclass(frozen=True, slots=True)
class DrainResult:
    """How long one worker took to advise a journal, and the CPU this process spent on it."""

    decisions: int
    elapsed_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.decisions / self.elapsed_s

    @property
    def cpu_us_per_advice(self) -> float:
        return self.cpu_s / self.decisions * 1e6


async def drain_journal(
    redis_url: str,
    sim: ManagedProcess,
    pan_key: bytes,
    *,
    decisions: int,
    rate: float = 20_000.0,
    in_flight: int = 128,
    batch: int = 1000,
    progress: bool = True,
) -> DrainResult:
    """One settlement worker, in this process, advises partition 0 to `sim` until it is empty."""
    pools = [{"name": "primary", "members": [{"name": "a1", "address": sim.address}]}]
    cfg = parse_config({**PLAINTEXT, "pools": pools}, "<bench>")  # the simulator listens in plaintext
    router = Router(cfg)
    sender = GrpcAdviceSender(router)
    settings = SettlementSettings(
        rate_per_s=rate,
        max_in_flight=in_flight,
        batch=batch,
        latency_target=timedelta(seconds=1),
    )
    redis = make_redis_client(RedisSettings(url=redis_url, socket_timeout=timedelta(seconds=5)))
    worker = Settlement(
        redis=make_redis_client(RedisSettings(url=redis_url, socket_timeout=timedelta(seconds=5))),
        keyring=PanKeyring.of(pan_key),
        sender=sender,
        issuer_healthy=sender.healthy,
        instance="bench-settle",
        journal=JournalSettings(),
        settings=settings,
        owns_redis=True,
    )
    if progress:
        print(
            f"draining {decisions:,} decisions: rate ceiling {rate:,.0f}/s, "
            f"{in_flight} in flight, batch {batch}"
        )
    started = time.monotonic()
    cpu_before = os.times()
    last_t, last_sent = started, 0
    await worker.start()
    try:
        while await redis.xlen("authgw:{journal:0}:decisions") > 0:
            await asyncio.sleep(1.0)
            now, sent = time.monotonic(), worker.stats.sent
            if progress:
                print(
                    f"  {now - started:5.1f} s  sent {sent:>7,}  "
                    f"({(sent - last_sent) / (now - last_t):,.0f}/s)"
                )
            last_t, last_sent = now, sent
        elapsed = time.monotonic() - started
        cpu_after = os.times()
    finally:
        await worker.close()
        await router.close()
        await redis.aclose()
    cpu_s = cpu_after.user - cpu_before.user + cpu_after.system - cpu_before.system
    s = worker.stats
    result = DrainResult(decisions, elapsed, cpu_s)
    if progress:
        print(f"\ndrained {decisions:,} decisions in {elapsed:.1f} s: {result.per_s:,.0f} advices/s")
        print(
            f"  sent {s.sent:,}  acked {s.acked:,}  duplicates {s.duplicates:,}  failed {s.failed:,}  "
            f"rejected {s.rejected:,}  dead letters {s.dead_letters:,}  "
            f"pacer backoffs {worker.pacer.backoffs}"
        )
        print(
            f"  worker CPU {cpu_s:.1f} s ({cpu_s / elapsed:.0%} of a core), "
            f"{result.cpu_us_per_advice:.0f} µs per advice"
        )
    return result


async def _check(sim: ManagedProcess, n: int) -> None:
    async with SimControl(sim.address, timeout_s=60) as ctl:
        report = await ctl.report()
    advices = [a for a in report.advices if a.request_id.startswith("bench-")]
    applied = sum(1 for a in advices if a.applied)
    wrong = sum(1 for a in advices if a.applied != (int(a.request_id.split("-")[1]) % 4 != 0))
    twice = sum(1 for a in advices if a.received > 1)
    print(f"issuer: {len(advices):,} advices recorded (of {n:,}), {applied:,} applied, "
          f"{wrong} applied wrongly, {twice} received more than once")  # fmt: skip


async def _run(args: argparse.Namespace, workdir: Path) -> int:
    redis = start_redis(workdir / "redis")
    port = free_port()
    sim_args = [
        "issuer-sim",
        "--listen",
        f"127.0.0.1:{port}",
        "--pool",
        "primary",
        "--member",
        "a1",
        "--uvloop",
    ]
    sim = start_authgw(workdir, "sim-a1", sim_args, port)
    try:
        token_key, pan_key = os.urandom(32), os.urandom(32)
        url = f"redis://127.0.0.1:{redis.port}/0"
        filled = await fill_journal(
            url, args.decisions, max(1, args.decisions // args.per_card), token_key, pan_key
        )
        print(f"journal: {args.decisions:,} decisions written in {filled:.1f} s")
        await drain_journal(
            url,
            sim,
            pan_key,
            decisions=args.decisions,
            rate=args.rate,
            in_flight=args.in_flight,
            batch=args.batch,
        )
        await _check(sim, args.decisions)
    finally:
        sim.stop()
        redis.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.bench_settle", description=__doc__.split("\n")[0])
    p.add_argument("--decisions", type=int, default=100_000, help="journal size")
    p.add_argument("--per-card", type=int, default=3, help="decisions per card on average")
    p.add_argument("--rate", type=float, default=20_000.0, help="pacing ceiling, advices/s")
    p.add_argument("--in-flight", type=int, default=128, help="advices awaiting an answer at once")
    p.add_argument("--batch", type=int, default=1000, help="journal entries read at a time")
    p.add_argument("--no-uvloop", action="store_true", help="run the worker on the default asyncio loop")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-settle-") as tmp:
        if args.no_uvloop:
            return asyncio.run(_run(args, Path(tmp)))
        import uvloop  # noqa: PLC0415  # optional speed-up, imported only when used

        return int(uvloop.run(_run(args, Path(tmp))))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
