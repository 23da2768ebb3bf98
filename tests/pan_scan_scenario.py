"""Everything a gateway with stand-in writes, exports and answers, for the PAN scan (tests/test_pan_scan.py).

Real processes: a private Redis (AOF, plus an RDB saved on demand), two issuer-sim
processes, an `authgw serve` process with stand-in, its local SQLite journal,
settlement, OTLP traces and metrics to a receiver in the test process, a
Prometheus endpoint, DEBUG logs. Known PANs go through the issuer, refused
requests whose bad fields hold PAN-like values, stand-in (every host hung), the
local journal (Redis killed, then back: the backlog is moved), operator commands
(card statuses, a bad card-status file, status), settlement once the hosts are
back, stand-in reversals, and stand-in code run in this process (its log records
kept). Then every output is gathered, by category, for the scanner
(pan_scan_collect.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import tomllib
import urllib.request
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from redis.asyncio import Redis

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.otlp_receiver import OtlpReceiver
from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_authgw, start_redis
from chaos.topology import standin_toml, to_toml
from standin import StandIn, StandInError, load_config
from standin.cardstatus import read_card_status_file
from tests.gateway_fixtures import auth_request
from tests.helpers import assert_eventually
from tests.pan_scan import DISTINCT_PANS
from tests.pan_scan_collect import (
    LogRecords,
    Outputs,
    collect_files,
    dump_redis,
    local_backlog,
    persistence,
    run_cli,
)
from tests.telemetry_scenario import FAST_EXPORT, observed_pools, traced_sim

PANS = DISTINCT_PANS  # Luhn-valid, 13 to 19 digits, digits that occur nowhere by chance
P1, P2, P3, P4, P5 = PANS
BAD_LUHN = P1[:-1] + str((int(P1[-1]) + 1) % 10)  # P1 with another check digit: refused


def refused_requests() -> list[tuple[str, pb.AuthorizeRequest]]:
    """Requests with bad field values that hold PAN-like values (each refused with INVALID_ARGUMENT)."""
    spaced = " ".join(P1[i : i + 4] for i in range(0, 16, 4))
    cases: list[tuple[str, dict[str, Any]]] = [
        ("pan fails Luhn", {"pan": BAD_LUHN}),
        ("pan with spaces", {"pan": spaced}),
        ("pan of 20 digits", {"pan": P2 + "7"}),
        ("pan with a letter", {"pan": P5[:8] + "x" + P5[9:]}),
        ("mcc", {"mcc": P5}),
        ("currency", {"currency": P3}),
        ("merchant_country", {"merchant_country": P4}),
        ("acquirer_id", {"acquirer_id": P2}),
        ("request_id too long", {"request_id": f"r-{P1}-" + "x" * 60}),
        ("merchant_id not printable", {"merchant_id": f"{P1}\x00"}),
        ("terminal_id not printable", {"terminal_id": f"{P5}\n"}),
    ]
    return [
        (name, auth_request(**{"request_id": f"bad-{i}", **fields})) for i, (name, fields) in enumerate(cases)
    ]


def reverse_request(rid: str, original: str, pan: str, **overrides: Any) -> pb.ReverseRequest:
    fields: dict[str, Any] = {
        "acquirer_id": "1001", "reversal_id": rid, "original_request_id": original, "pan": pan,
        "final_amount_minor": 0, "reason": pb.CARDHOLDER_CANCEL, "currency": "EUR",
    }  # fmt: skip
    fields.update(overrides)
    return pb.ReverseRequest(**fields)


def _gateway_config(workdir: Path, sims: dict[str, ManagedProcess], endpoint: str, redis_port: int) -> Path:
    standin = workdir / "standin.toml"
    text = standin_toml(f"redis://127.0.0.1:{redis_port}/0")
    standin.write_text(text.replace("[redis]\n", '[redis]\ncommand_deadline = "1s"\n', 1))
    doc = {
        "gateway": {"listen": f"127.0.0.1:{free_port()}", "instance": "gw-scan", "drain_timeout": "3s"},
        **PLAINTEXT,
        "routing": {"attempt_timeout": "200ms"},
        "outlier": {"consecutive_failures": 2, "max_ejection_share": 1.0},
        "standin": {"config": str(standin), "sqlite_path": str(workdir / "gw-scan.sqlite3")},
        "settlement": {"rate_per_s": 2000, "lease_ttl": "2s", "advise_timeout": "500ms", "block": "100ms"},
        **observed_pools(endpoint, free_port(), sims),
    }
    config = workdir / "gateway.toml"
    config.write_text(to_toml(doc))
    return config


def _scrape(config: Path) -> str:
    listen = tomllib.loads(config.read_text())["telemetry"]["prometheus_listen"]
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


@dataclass
class _Run:
    """The processes and channel of one scenario run, and what was collected so far."""

    workdir: Path
    redis: ManagedProcess
    sims: dict[str, ManagedProcess]
    gw: ManagedProcess
    config: Path
    stub: pb_grpc.AuthorizationStub
    channel: grpc.aio.Channel
    out: Outputs

    def count(self, name: str, n: int = 1) -> None:
        self.out.counts[name] = self.out.counts.get(name, 0) + n

    async def authorize(self, rid: str, pan: str, **kw: Any) -> pb.AuthorizeResponse:
        answer = await self.stub.Authorize(auth_request(request_id=rid, pan=pan, **kw), timeout=5)
        self.count(f"answer {pb.Source.Name(answer.source)}")
        return answer

    async def refused(self, where: str, call: Awaitable[Any]) -> None:
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            self.out.errors.append((where, f"{exc.code().name}: {exc.details()}"))
            self.count(f"refused {exc.code().name}")
        else:
            raise AssertionError(f"{where}: was not refused")

    async def journal_len(self) -> int:
        r = Redis(port=self.redis.port)
        try:
            return int(await r.xlen("authgw:{journal:0}:decisions"))
        finally:
            await r.aclose()


async def _issuer_phase(run: _Run) -> None:
    """Every PAN answered by the primary issuer; one reversal; the refused requests; raw undecodable bytes."""
    for i, pan in enumerate(PANS):
        await run.authorize(f"iss-{i}", pan)
    for name, request in refused_requests():
        await run.refused(f"Authorize {name}", run.stub.Authorize(request, timeout=5))
    await run.refused(
        "Reverse pan with a letter",
        run.stub.Reverse(reverse_request("rev-bad", "iss-1", P2[:-2] + "x7"), timeout=5),
    )
    await run.refused(
        "Reverse reversal_id too long",
        run.stub.Reverse(reverse_request(f"rev-{P3}-" + "y" * 60, "iss-2", P3), timeout=5),
    )
    raw = run.channel.unary_unary("/authgw.v1.Authorization/Authorize")
    await run.refused("undecodable bytes", raw(b"\x12\x10" + P1.encode() + b"\xff\xff\xff", timeout=5))


async def _standin_phase(run: _Run) -> None:
    """Every host hung: stand-in through Redis, then with Redis killed (local journal), then Redis back."""
    for sim in run.sims.values():
        sim.signal(signal.SIGSTOP)
    for i, pan in enumerate(PANS):
        await run.authorize(f"si-{i}", pan, amount_minor=700 + i)
    other = auth_request(request_id="si-1", pan=P2, amount_minor=999)  # si-1 was P2 for 701
    await run.refused("reused request id", run.stub.Authorize(other, timeout=5))
    await asyncio.to_thread(run.redis.kill)
    for i, pan in enumerate(PANS):
        await run.authorize(f"local-{i}", pan, amount_minor=300 + i)
    sqlite = run.workdir / "gw-scan.sqlite3"
    run.count("local backlog", local_backlog(sqlite))
    snapshot = run.workdir / "snapshot"
    snapshot.mkdir()
    for f in run.workdir.glob("gw-scan.sqlite3*"):  # the file, its WAL and shared memory, mid-outage
        shutil.copy(f, snapshot / f.name)
    await asyncio.to_thread(run.redis.start)

    async def moved() -> None:
        assert local_backlog(sqlite) == 0

    await assert_eventually(moved, timeout_s=20)
    run.count("journal entries", await run.journal_len())


async def _redis_files_phase(run: _Run) -> None:
    """An AOF rewrite (RDB preamble) and an RDB save while the journal holds every decision."""
    r = Redis(port=run.redis.port)
    try:
        await r.bgrewriteaof()

        async def rewritten() -> None:
            info = await r.info("persistence")
            assert not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

        await assert_eventually(rewritten, timeout_s=10)
        await r.save()
    finally:
        await r.aclose()
    run.out.redis += [(f"journal full: {w}", b) for w, b in await dump_redis(run.redis.port)]


async def _operator_phase(run: _Run, inputs: Path) -> None:
    """Operator commands as processes: card statuses (a good file, a bad one), status, a bad authorize."""
    good, bad = inputs / "statuses.csv", inputs / "bad.jsonl"
    good.write_text(f"pan,status\n{P3},lost\n{P4},stolen\n")
    bad.write_text(json.dumps({"pan": int(P5), "status": "lost"}) + "\n")
    cfg = str(run.config)
    for name, args in [
        ("load-card-status", ["standin", "load-card-status", str(good), "--config", cfg]),
        ("load-card-status bad file", ["standin", "load-card-status", str(bad), "--config", cfg]),
        ("standin status", ["standin", "status", "--config", cfg]),
        ("authorize bad pan", ["authorize", "--target", run.gw.address, "--pan", BAD_LUHN, "--amount", "1"]),
    ]:
        out = await asyncio.to_thread(run_cli, run.workdir, *args)
        run.out.errors.append((f"authgw {name}", out))
        run.count("operator commands")


async def _settle_phase(run: _Run) -> None:
    """Hosts back: settlement advises every journal entry (the issuer gets the PANs, nothing else does)."""
    for sim in run.sims.values():
        sim.signal(signal.SIGCONT)

    async def settled() -> None:
        assert await run.journal_len() == 0

    await assert_eventually(settled, timeout_s=30)


async def _reversal_phase(run: _Run) -> None:
    """Hosts hung again: reversals of stand-in approvals, journaled (left there: issuer-sim does not
    implement IssuerHost/Reverse, so settlement could not forward them)."""
    for sim in run.sims.values():
        sim.signal(signal.SIGSTOP)
    before = await run.journal_len()
    await run.authorize("si-late", P3, amount_minor=900)
    for rid, original, pan in (
        ("rev-si-0", "si-0", P1),
        ("rev-local-1", "local-1", P2),
        ("rev-late", "si-late", P3),
    ):
        answer = await run.stub.Reverse(reverse_request(rid, original, pan), timeout=5)
        run.count(f"reversal {pb.ReversalStatus.Name(answer.status)}")
    run.count("reversal entries", await run.journal_len() - before - 1)
    run.out.metrics.append(("prometheus scrape", await asyncio.to_thread(_scrape, run.config)))


async def _in_process_phase(run: _Run, inputs: Path) -> None:
    """Stand-in code in this process, its log records kept: the mid-outage journal copy replayed (as for
    a host that never came back: moved exactly once), a bad card-status file read."""
    records = LogRecords()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        copy = run.workdir / "lost-host.sqlite3"
        for f in (run.workdir / "snapshot").glob("gw-scan.sqlite3*"):
            shutil.copy(f, copy.with_name(f.name.replace("gw-scan", "lost-host")))
        config = replace(load_config(run.workdir / "standin.toml", {}), sqlite_path=copy, instance="gw-lost")
        async with StandIn.from_config(config) as engine:
            run.count("replayed from a copy", await engine.move_backlog())
        try:
            list(read_card_status_file(inputs / "bad.jsonl"))
        except StandInError as exc:
            run.out.errors.append(("card-status file error (in process)", str(exc)))
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
    run.out.logs.append(("python log records", "\n".join(records.lines)))
    run.count("python log records", len(records.lines))


async def run_scenario(workdir: Path, inputs: Path) -> Outputs:
    """Drive every path with PANS; return everything that left the processes (see module docstring)."""
    redis = await asyncio.to_thread(start_redis, workdir / "redis")
    try:
        out = await _run(workdir, inputs, redis)
        out.redis += [(f"after settlement: {w}", b) for w, b in await dump_redis(redis.port)]
    finally:
        await asyncio.to_thread(redis.stop)
    await persistence(workdir, out)
    await asyncio.to_thread(collect_files, out, workdir)
    return out


async def _run(workdir: Path, inputs: Path, redis: ManagedProcess) -> Outputs:
    out = Outputs()
    async with OtlpReceiver() as receiver:
        sims = {"a1": traced_sim(workdir, "primary", "a1", receiver.endpoint)}
        try:
            sims["b1"] = traced_sim(workdir, "secondary", "b1", receiver.endpoint)
            config = _gateway_config(workdir, sims, receiver.endpoint, redis.port)
            serve = ["serve", "--config", str(config), "--log-level", "DEBUG"]
            port = int(tomllib.loads(config.read_text())["gateway"]["listen"].rpartition(":")[2])
            gw = start_authgw(workdir, "gw-scan", serve, port, env=FAST_EXPORT)
            try:
                async with grpc.aio.insecure_channel(gw.address) as channel:
                    run = _Run(
                        workdir, redis, sims, gw, config, pb_grpc.AuthorizationStub(channel), channel, out
                    )
                    await _issuer_phase(run)
                    await _standin_phase(run)
                    await _redis_files_phase(run)
                    await _operator_phase(run, inputs)
                    await _settle_phase(run)
                    await _reversal_phase(run)
                    await _in_process_phase(run, inputs)
            finally:
                await asyncio.to_thread(gw.stop, 15)
        finally:
            for sim in sims.values():
                await asyncio.to_thread(sim.stop, 10)

        async def flushed() -> None:
            assert any(s.name == "authgw.settlement.advise" for s in receiver.spans())
            assert "authgw.decisions" in receiver.metric_names()

        await assert_eventually(flushed, timeout_s=15)
        out.spans = [(f"trace export {i}", p) for i, p in enumerate(receiver.trace_payloads)]
        out.spans += [(f"span {s.name}", json.dumps(vars(s), default=str)) for s in receiver.spans()]
        out.metrics += [(f"metric export {i}", p) for i, p in enumerate(receiver.metric_payloads)]
        out.counts["spans"] = len(receiver.spans())
    return out
