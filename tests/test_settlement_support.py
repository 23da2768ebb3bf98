"""Shared builders for the settlement tests (no tests here): simulators, journals, workers, checks."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from opentelemetry.trace import Tracer
from redis.asyncio import Redis
from test_standin_support import PAN_KEY, PATIENT, TOKEN_KEY, client, engine, luhn_pan, request

from authgw.v1 import simulator_pb2
from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.sim_control import SimControl
from chaos.topology import to_toml
from gateway.router import Router
from gateway.settlement.sender import GrpcAdviceSender
from standin import JournalSettings, PanKeyring, Reason, RedisSettings, StandInDecision
from standin.settlement import AdviceSender, Settlement
from standin.settlement.settings import SettlementSettings
from tests.gateway_fixtures import gateway_config

# Quick enough for tests: a killed worker's partitions move within a second or two.
FAST = SettlementSettings(
    rate_per_s=2000,
    lease_ttl=timedelta(seconds=2),
    advise_timeout=timedelta(milliseconds=500),
    block=timedelta(milliseconds=100),
    heartbeat=timedelta(milliseconds=200),
    pause=timedelta(milliseconds=200),
    pause_max=timedelta(seconds=1),
    pause_after_failures=3,
    retry_backoff=timedelta(milliseconds=10),
    max_attempts=3,
    redis_deadline=timedelta(seconds=1),
)

_cards = itertools.count(1)


def new_pans(n: int) -> list[str]:
    """`n` Luhn-valid PANs no other test uses (the simulators' ledgers outlive a test)."""
    return [luhn_pan(f"49{next(_cards):08d}") for _ in range(n)]


def standin_file(tmp_path: Path, redis_port: int, *, partitions: int = 1) -> Path:
    """A stand-in config on the test Redis with the tests' keys (for the CLI and `authgw settle`)."""
    path = tmp_path / "standin.toml"
    doc = {
        "standin": {"instance": "gw-cli"},
        "redis": {"url": f"redis://127.0.0.1:{redis_port}/0", "insecure": True},
        "journal": {"partitions": partitions},
        "local": {"sqlite_path": "local.sqlite3"},
        "keys": {
            "token_key_b64": base64.b64encode(TOKEN_KEY).decode(),
            "pan_key_b64": base64.b64encode(PAN_KEY).decode(),
            "token_key_env": "AUTHGW_TEST_UNSET_TOKEN",
            "pan_key_env": "AUTHGW_TEST_UNSET_PAN",
        },
    }
    path.write_text(to_toml(doc))
    return path


def start_sims(workdir: Path, ledger_url: str) -> dict[str, ManagedProcess]:
    """One issuer-sim per pool (primary a1, secondary b1) sharing one issuer ledger."""
    procs = {}
    for pool, member in (("primary", "a1"), ("secondary", "b1")):
        port = free_port()
        args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", pool, "--member", member]
        procs[member] = start_authgw(workdir, f"sim-{member}", [*args, "--ledger", ledger_url], port)
    return procs


def pools_of(sims: dict[str, ManagedProcess]) -> list[dict[str, Any]]:
    return [
        {"name": "primary", "priority": 1, "members": [{"name": "a1", "address": sims["a1"].address}]},
        {"name": "secondary", "priority": 2, "members": [{"name": "b1", "address": sims["b1"].address}]},
    ]


async def journal_decisions(
    redis_port: int,
    sqlite: Path,
    pans: Iterable[str],
    *,
    per_card: int = 1,
    instance: str = "gw-test",
    partitions: int = 1,
    declines_every: int = 4,
    redis_settings: RedisSettings = PATIENT,
) -> list[StandInDecision]:
    """Stand-in decisions journaled in Redis: every `declines_every`-th is a gambling MCC (declined 57)."""
    out: list[StandInDecision] = []
    n = 0
    async with engine(
        redis_port,
        sqlite,
        instance=instance,
        journal=JournalSettings(partitions=partitions),
        redis_settings=redis_settings,
    ) as e:
        for pan in pans:
            for _ in range(per_card):
                n += 1
                mcc = "7995" if declines_every and n % declines_every == 0 else "5411"
                out.append(
                    await e.decide(request(pan, mcc=mcc, amount_minor=100 + n), Reason.ALL_POOLS_FAILED)
                )
    return out


def router_for(sims: dict[str, ManagedProcess]) -> Router:
    """A router over the simulators (built inside the running loop: it opens channels)."""
    return Router(gateway_config([("primary", [sims["a1"].address]), ("secondary", [sims["b1"].address])]))


@asynccontextmanager
async def worker(
    redis_port: int,
    sims: dict[str, ManagedProcess],
    *,
    settings: SettlementSettings = FAST,
    issuer_healthy: Callable[[], bool] = lambda: True,
    partitions: int = 1,
    instance: str = "gw-test",
    tracer: Tracer | None = None,
    keyring: PanKeyring | None = None,
    spy: Callable[[AdviceSender], AdviceSender] | None = None,
    redis_settings: RedisSettings = PATIENT,
) -> AsyncIterator[Settlement]:
    """A started in-process worker advising the simulators through the gateway's gRPC sender.

    Args:
        keyring: PAN_KEY alone unless given.
        spy: wraps the sender (a test that wants to see what is sent; the sims still get it all).
    """
    router = router_for(sims)
    sender = GrpcAdviceSender(router)
    wrapped = spy(sender) if spy is not None else sender
    w = Settlement(
        redis=client(redis_port, redis_settings),
        keyring=keyring or PanKeyring.of(PAN_KEY),
        sender=wrapped,
        issuer_healthy=lambda: issuer_healthy() and sender.healthy(),
        instance=instance,
        journal=JournalSettings(partitions=partitions),
        settings=settings,
        tracer=tracer,
        owns_redis=True,
    )
    try:
        async with w:
            yield w
    finally:
        await router.close()


@dataclass(frozen=True)
class IssuerView:
    """What the issuer ledger recorded of some decisions."""

    records: dict[str, simulator_pb2.AdviceRecord]
    order: list[str]  # decision ids in order of first arrival

    def missing(self, decisions: Sequence[StandInDecision]) -> list[str]:
        return [d.decision_id for d in decisions if d.decision_id not in self.records]


async def issuer_view(sim: ManagedProcess, decisions: Sequence[StandInDecision]) -> IssuerView:
    """The ledger's records of `decisions` (asked of one simulator; the ledger is shared)."""
    wanted = {d.decision_id for d in decisions}
    async with SimControl(sim.address) as ctl:
        report = await ctl.report()
    records = {a.decision_id: a for a in report.advices if a.decision_id in wanted}
    return IssuerView(records, [a.decision_id for a in report.advices if a.decision_id in wanted])


async def assert_applied_exactly_once(
    sim: ManagedProcess, decisions: Sequence[StandInDecision]
) -> IssuerView:
    """Every decision is at the issuer once: approvals posted, declines recorded and never debited."""
    view = await issuer_view(sim, decisions)
    assert not view.missing(decisions), f"{len(view.missing(decisions))} decisions not at the issuer"
    for d in decisions:
        record = view.records[d.decision_id]
        assert record.applied == d.approved, d.decision_id
        assert record.request_id == d.request_id
    posted = [r.request_id for r in view.records.values() if r.applied]
    assert len(posted) == len(set(posted)), "a request posted twice"
    return view


async def stream_len(redis: Redis, partitions: int = 1) -> int:
    return sum([await redis.xlen(f"authgw:{{journal:{p}}}:decisions") for p in range(partitions)])


async def dead_letters(redis: Redis, partitions: int = 1) -> list[dict[str, str]]:
    out = []
    for p in range(partitions):
        for _, f in await redis.xrange(f"authgw:{{journal:{p}}}:dead"):
            out.append({k.decode(): v.decode() for k, v in f.items()})
    return out


def gateway_toml(
    tmp_path: Path, name: str, standin: Path, sims: dict[str, ManagedProcess], settlement: dict[str, Any]
) -> Path:
    """A gateway config file for `authgw settle` / `authgw serve`."""
    path = tmp_path / f"{name}.toml"
    doc = {
        "gateway": {"listen": f"127.0.0.1:{free_port()}", "instance": name},
        **PLAINTEXT,
        "standin": {"config": str(standin), "sqlite_path": str(tmp_path / f"{name}.sqlite3")},
        "settlement": settlement,
        "pools": pools_of(sims),
    }
    path.write_text(to_toml(doc))
    return path


def fast_settlement_toml(**overrides: Any) -> dict[str, Any]:
    """FAST as a `[settlement]` table."""
    table: dict[str, Any] = {
        "rate_per_s": 2000,
        "lease_ttl": "2s",
        "advise_timeout": "500ms",
        "block": "100ms",
        "heartbeat": "200ms",
        "pause": "200ms",
        "pause_max": "1s",
        "pause_after_failures": 3,
        "retry_backoff": "10ms",
        "max_attempts": 3,
        "redis_deadline": "1s",
    }
    table.update(overrides)
    return table
