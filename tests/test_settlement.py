"""Settlement against real Redis and real issuer simulators: exactly once in effect, nothing lost."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import assert_eventually
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_settlement_support import (
    FAST,
    assert_applied_exactly_once,
    dead_letters,
    fast_settlement_toml,
    gateway_toml,
    issuer_view,
    journal_decisions,
    new_pans,
    pools_of,
    standin_file,
    start_sims,
    stream_len,
    worker,
)
from test_standin_support import ENV, IMPATIENT, client, engine, request

from authgw.v1 import authorization_pb2 as pb
from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_redis
from chaos.sim_control import SimControl
from gateway.app import Gateway
from gateway.config import parse_config
from standin import Reason
from standin.redis_io import RedisGate
from standin.settlement import WorkerState
from standin.settlement.dispatch import ADVISE_SPAN
from standin.settlement.store import SettleStore
from tests.gateway_fixtures import auth_request

LEDGER_DB = 5  # the issuer's ledger: its own database of the session Redis


def start_settle(workdir: Path, name: str, args: list[str]) -> ManagedProcess:
    """`authgw settle ...` as a child process (gateway.settlement.command)."""
    argv = [sys.executable, "-m", "gateway.settlement.command", *args]
    return ManagedProcess(name, argv, 0, workdir, env={"PYTHONUNBUFFERED": "1"}).start(wait_port=False)


@pytest.fixture(scope="module")
def sims(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess
) -> Iterator[dict[str, ManagedProcess]]:
    """Two issuer hosts (primary a1, secondary b1) sharing one ledger."""
    procs = start_sims(
        tmp_path_factory.mktemp("settle-sims"), f"redis://127.0.0.1:{redis_server.port}/{LEDGER_DB}"
    )
    yield procs
    for p in procs.values():
        p.stop()


@pytest.fixture
async def redis_port(redis_port: int, sims: dict[str, ManagedProcess]) -> AsyncIterator[int]:
    """The session Redis without stand-in keys (conftest's fixture); simulators running and without
    faults afterwards."""
    yield redis_port
    for p in sims.values():
        p.signal(signal.SIGCONT)
        async with SimControl(p.address) as ctl:
            await ctl.clear_faults()


async def test_outage_then_recovery_settles_every_decision_once(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """A gateway answers in stand-in while every host hangs; back up, each decision is applied once."""
    standin = standin_file(tmp_path, redis_port)
    doc = {
        "gateway": {"listen": f"127.0.0.1:{free_port()}", "instance": "gw-out"},
        **PLAINTEXT,
        "routing": {"attempt_timeout": "200ms"},
        "standin": {"config": str(standin), "sqlite_path": str(tmp_path / "gw-out.sqlite3")},
        "settlement": fast_settlement_toml(),
        "pools": pools_of(sims),
    }
    gw = Gateway(parse_config(doc, str(tmp_path / "gateway.toml")))
    settlement = gw.settlement  # the gateway's own worker (gateway/app.py wiring)
    assert settlement is not None
    await gw.start()
    try:
        for p in sims.values():
            p.signal(signal.SIGSTOP)
        answers = []
        for i, pan in enumerate(new_pans(12)):
            mcc = "7995" if i % 3 == 0 else "5411"  # a third are gambling: declined 57 by stand-in
            answers.append(
                await gw.service.decide(auth_request(pan=pan, mcc=mcc, amount_minor=500 + i), None)
            )
        assert all(a.source == pb.STAND_IN for a in answers)
        assert {a.decision for a in answers} == {pb.APPROVED, pb.DECLINED}

        async def paused() -> None:
            assert gw.standin_mode.active and settlement.state is WorkerState.PAUSED

        await assert_eventually(paused)
        for p in sims.values():
            p.signal(signal.SIGCONT)

        async def settled() -> None:
            async with SimControl(sims["a1"].address) as ctl:
                report = await ctl.report()
            records = {a.decision_id: a for a in report.advices}
            for a in answers:
                assert a.decision_id in records
                assert records[a.decision_id].applied == (a.decision == pb.APPROVED)
                assert records[a.decision_id].request_id == a.request_id

        await assert_eventually(settled, timeout_s=15)
    finally:
        await gw.close()


async def test_unhealthy_issuer_gets_nothing_until_healthy(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """While issuer_healthy() is False the worker sends nothing; when it turns True everything goes."""
    decisions = await journal_decisions(redis_port, tmp_path / "l.db", new_pans(10))
    healthy = False
    async with worker(redis_port, sims, issuer_healthy=lambda: healthy) as w:

        async def paused() -> None:
            assert w.state is WorkerState.PAUSED

        await assert_eventually(paused)
        assert w.stats.sent == 0
        assert not (await issuer_view(sims["a1"], decisions)).records
        healthy = True
        await assert_eventually(lambda: assert_applied_exactly_once(sims["a1"], decisions), timeout_s=10)


async def test_killed_settle_process_loses_nothing(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """`authgw settle` SIGKILLed half way, another takes over: nothing missing, nothing applied twice."""
    decisions = await journal_decisions(redis_port, tmp_path / "l.db", new_pans(300))
    cfg = gateway_toml(
        tmp_path,
        "gw-k",
        standin_file(tmp_path, redis_port),
        sims,
        fast_settlement_toml(rate_per_s=100, min_rate_per_s=100),
    )
    args = ["settle", "--config", str(cfg), "--log-format", "text"]
    first = start_settle(tmp_path, "settle-1", args)
    second: ManagedProcess | None = None
    try:

        async def half_way() -> None:
            assert len((await issuer_view(sims["a1"], decisions)).records) >= 100

        await assert_eventually(half_way, timeout_s=15)
        first.kill()
        r = client(redis_port)
        assert await stream_len(r) > 0
        second = start_settle(tmp_path, "settle-2", args)
        await assert_eventually(lambda: assert_applied_exactly_once(sims["a1"], decisions), timeout_s=20)

        async def journal_empty() -> None:
            assert await stream_len(r) == 0

        await assert_eventually(journal_empty)
        await r.aclose()
    finally:
        first.kill()
        if second is not None:
            second.stop()


async def test_issuer_failing_during_replay_pauses_and_resumes(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """The issuer fails again half way: settlement pauses, then resumes and loses nothing."""
    decisions = await journal_decisions(redis_port, tmp_path / "l.db", new_pans(200))
    slow = dataclasses.replace(FAST, rate_per_s=100, min_rate_per_s=100)
    async with worker(redis_port, sims, settings=slow) as w:

        async def some() -> None:
            assert len((await issuer_view(sims["a1"], decisions)).records) >= 40

        await assert_eventually(some, timeout_s=10)
        for p in sims.values():
            async with SimControl(p.address) as ctl:
                await ctl.set_faults(error_rate=1.0)

        async def paused() -> None:
            assert w.state is WorkerState.PAUSED and w.pause.pauses >= 1

        await assert_eventually(paused)
        done_while_failing = len((await issuer_view(sims["a1"], decisions)).records)
        assert done_while_failing < len(decisions)
        for p in sims.values():
            async with SimControl(p.address) as ctl:
                await ctl.clear_faults()
        await assert_eventually(lambda: assert_applied_exactly_once(sims["a1"], decisions), timeout_s=15)


async def test_poison_advice_goes_to_the_dead_letters(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """An advice the issuer refuses as malformed becomes a dead letter with its error; the others go on."""
    good = await journal_decisions(redis_port, tmp_path / "l.db", new_pans(5))
    async with engine(redis_port, tmp_path / "l.db") as e:  # 16 digits failing Luhn: the issuer refuses it
        poison = await e.decide(request("4111111111111112"), Reason.ALL_POOLS_FAILED)
    r = client(redis_port)
    async with worker(redis_port, sims):
        await assert_eventually(lambda: assert_applied_exactly_once(sims["a1"], good), timeout_s=10)

        async def dead() -> None:
            letters = await dead_letters(r)
            assert [d["decision_id"] for d in letters] == [poison.decision_id]
            assert "INVALID_ARGUMENT" in letters[0]["dead_error"]
            assert letters[0]["dead_error"].startswith("poison")

        await assert_eventually(dead)
    assert await stream_len(r) == 0
    assert (await issuer_view(sims["a1"], [poison])).missing([poison])
    await r.aclose()


async def authgw(*args: str) -> tuple[int, str, str]:
    """Run `authgw <args>` (the real console entry point); (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, env={**os.environ, **ENV},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_rejected_advices_are_dead_lettered_then_replayed_on_command(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Advices the issuer keeps rejecting become dead letters; `replay --dead-letters` settles them."""
    for p in sims.values():
        async with SimControl(p.address) as ctl:
            await ctl.set_faults(advise_reject_rate=1.0)
    decisions = await journal_decisions(redis_port, tmp_path / "l.db", new_pans(6))
    r = client(redis_port)
    async with worker(redis_port, sims):

        async def all_dead() -> None:
            letters = await dead_letters(r)
            assert sorted(d["decision_id"] for d in letters) == sorted(d.decision_id for d in decisions)
            assert all(d["dead_attempts"] == str(FAST.max_attempts) for d in letters)
            assert all("FAILED_PRECONDITION" in d["dead_error"] for d in letters)

        await assert_eventually(all_dead, timeout_s=10)
        for p in sims.values():
            async with SimControl(p.address) as ctl:
                await ctl.clear_faults()
        code, out, err = await authgw(
            "standin", "replay", "--dead-letters", "--config", str(standin_file(tmp_path, redis_port))
        )
        assert code == 0, err
        assert '"requeued": 6' in out
        await assert_eventually(lambda: assert_applied_exactly_once(sims["a1"], decisions), timeout_s=10)
    assert await dead_letters(r) == []
    await r.aclose()


async def test_local_journal_decisions_are_settled_once(
    sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Decisions recorded in SQLite while Redis was down reach the issuer once after Redis returns."""
    port = free_port()
    pans = new_pans(8)
    async with engine(port, tmp_path / "local.sqlite3", redis_settings=IMPATIENT) as e:
        local = [await e.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in pans]
        assert (await e.status()).local_backlog == len(local)
        redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
        try:
            async with worker(port, sims):
                await assert_eventually(lambda: assert_applied_exactly_once(sims["a1"], local), timeout_s=15)
                assert (await e.status()).local_backlog == 0
        finally:
            await asyncio.to_thread(redis.stop)


async def test_cards_keep_decision_order_with_two_workers(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Two workers share four partitions: each card's advices reach the issuer in decision order, once."""
    pans = new_pans(6)
    decisions = await journal_decisions(redis_port, tmp_path / "l.db", pans, per_card=12, partitions=4)
    async with (
        worker(redis_port, sims, partitions=4, instance="gw-a") as a,
        worker(redis_port, sims, partitions=4, instance="gw-b") as b,
    ):
        view = await assert_eventually(
            lambda: assert_applied_exactly_once(sims["a1"], decisions), timeout_s=15
        )

        async def shared() -> None:
            assert len(a.held_partitions()) == 2 and len(b.held_partitions()) == 2

        await assert_eventually(shared, timeout_s=10)
    position = {d: i for i, d in enumerate(view.order)}
    for i in range(len(pans)):
        card = decisions[i * 12 : (i + 1) * 12]
        assert sorted(card, key=lambda d: position[d.decision_id]) == card


async def test_settlement_span_links_to_the_authorization_trace(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Each advice's span is linked to the trace of the authorization it settles."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with engine(redis_port, tmp_path / "l.db") as e:
        decision = await e.decide(request(new_pans(1)[0]), Reason.ALL_POOLS_FAILED, traceparent)
    async with worker(redis_port, sims, tracer=provider.get_tracer("test")):
        await assert_eventually(lambda: assert_applied_exactly_once(sims["a1"], [decision]), timeout_s=10)
    spans = [s for s in exporter.get_finished_spans() if s.name == ADVISE_SPAN]  # a retry adds one
    assert spans and spans[-1].attributes is not None
    assert spans[-1].attributes["authgw.settlement.outcome"] == "acked", [s.status for s in spans]
    for span in spans:
        assert span.attributes is not None
        assert span.attributes["authgw.settlement.decision_id"] == decision.decision_id
        [link] = span.links
        assert f"{link.context.trace_id:032x}-{link.context.span_id:016x}" in traceparent
        assert span.context.trace_id != link.context.trace_id  # a trace of its own, linked, not continued


async def test_dead_workers_consumers_are_pruned_but_not_their_pending_entries(redis_port: int) -> None:
    """A consumer left by a dead worker is deleted only when it has nothing pending."""
    r = client(redis_port)
    stream = "authgw:{journal:0}:decisions"
    await r.xgroup_create(stream, "settlement", id="0", mkstream=True)
    await r.xadd(stream, {"v": "1"})
    await r.xreadgroup("settlement", "busy", {stream: ">"}, count=1)  # keeps one entry pending
    await r.xgroup_createconsumer(stream, "settlement", "idle")
    store = SettleStore(RedisGate(r, timedelta(seconds=2)), group="settlement", worker_id="me", settler="gw")
    assert await store.prune_consumers(0, min_idle_ms=0) == 1
    assert [c["name"] for c in await r.xinfo_consumers(stream, "settlement")] == [b"busy"]
    await r.aclose()
