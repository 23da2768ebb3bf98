"""Tail sampling in a real gateway process (`[telemetry] sampling = "tail"`), seen from an OTLP receiver.

Two traced issuer-sim processes (primary a1, secondary b1) and `authgw serve` with stand-in, at
tail_keep_ratio 0: only interesting traces leave the gateway. The requests go through the
primary (with no trace context, with an unsampled and with a sampled caller), a failover (a1
killed) and stand-in (b1 hung). A second gateway with tail_max_kept_per_s = 1 gets a burst of
sampled requests: each is either exported or counted in authgw.traces.dropped.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.otlp_receiver import OtlpReceiver, ReceivedSpan
from chaos.processes import ManagedProcess
from gateway.tracing import ATTEMPT_SPAN, FAILOVER_EVENT, SERVER_SPAN
from tests.gateway_fixtures import auth_request
from tests.helpers import assert_eventually
from tests.telemetry_scenario import scrape, traced_gateway, traced_sim

N = 4
TAIL = {"sampling": "tail", "tail_keep_ratio": 0.0, "tail_latency_threshold": "30s"}
STANDIN_SPANS = {SERVER_SPAN, "authgw.standin.decide", "authgw.standin.journal"}


def _caller(i: int, sampled: bool) -> tuple[str, str]:
    """A caller's traceparent with a known trace id."""
    return ("traceparent", f"00-{_trace_id(i, sampled)}-b7ad6b7169203331-{'01' if sampled else '00'}")


def _trace_id(i: int, sampled: bool) -> str:
    return f"{0xC0FFEE00 + i:016x}{int(sampled):016x}"


@dataclass
class Run:
    spans: list[ReceivedSpan]
    answers: dict[str, pb.AuthorizeResponse] = field(default_factory=dict)

    def server(self, rid: str) -> list[ReceivedSpan]:
        return [
            s for s in self.spans if s.name == SERVER_SPAN and s.attributes.get("authgw.request_id") == rid
        ]

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]


async def _drive(
    stub: pb_grpc.AuthorizationStub, sims: dict[str, ManagedProcess], run: Run, receiver: OtlpReceiver
) -> None:
    async def send(rid: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        run.answers[rid] = await stub.Authorize(auth_request(request_id=rid), timeout=5, metadata=metadata)

    for i in range(N):
        await send(f"plain-{i}")
        await send(f"unsampled-{i}", (_caller(i, False),))
        await send(f"sampled-{i}", (_caller(i, True),))

    async def primary_exported() -> None:  # before a1 is killed with its spans in its buffer
        assert sum(s.resource.get("authgw.member") == "a1" for s in receiver.spans()) >= N

    await assert_eventually(primary_exported, timeout_s=10)
    sims["a1"].kill()
    for i in range(N):
        await send(f"fo-{i}")
    sims["b1"].signal(signal.SIGSTOP)
    for i in range(N):
        await send(f"si-{i}")
    sims["b1"].signal(signal.SIGCONT)


@pytest.fixture(scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess) -> AsyncIterator[Run]:
    workdir = tmp_path_factory.mktemp("tail")
    async with OtlpReceiver() as receiver:
        sims = {
            m: traced_sim(workdir, p, m, receiver.endpoint)
            for p, m in (("primary", "a1"), ("secondary", "b1"))
        }
        gw, _ = traced_gateway(workdir, sims, receiver.endpoint, redis_server.port, TAIL)
        result = Run([])
        try:
            async with grpc.aio.insecure_channel(gw.address) as channel:
                await _drive(pb_grpc.AuthorizationStub(channel), sims, result, receiver)
        finally:
            await asyncio.to_thread(gw.stop, 15)
            for sim in sims.values():
                await asyncio.to_thread(sim.stop, 10)

        async def flushed() -> None:
            names = {s.name for s in receiver.spans()}
            assert "authgw.standin.decide" in names

        await assert_eventually(flushed, timeout_s=15)
        result.spans = receiver.spans()
        yield result


def test_paths_were_taken(run: Run) -> None:
    sources = {rid: (a.source, a.pool) for rid, a in run.answers.items()}
    assert {sources[f"plain-{i}"] for i in range(N)} == {(pb.ISSUER, "primary")}
    assert {sources[f"fo-{i}"] for i in range(N)} == {(pb.ISSUER, "secondary")}
    assert {sources[f"si-{i}"][0] for i in range(N)} == {pb.STAND_IN}


def test_an_approved_request_at_ratio_zero_leaves_no_trace(run: Run) -> None:
    """Nothing of a plain request (no server span) nor of an unsampled caller's trace (no span at all,
    the issuer's half included: it was told 'not sampled')."""
    for i in range(N):
        assert run.server(f"plain-{i}") == []
        assert run.trace(_trace_id(i, sampled=False)) == []


def test_a_callers_sampled_flag_is_honoured_and_the_issuer_joins(run: Run) -> None:
    """The caller asked for the trace: server span in its trace, the attempt, and the issuer's span
    whose parent is the exported attempt span (the id sent before the attempt)."""
    for i in range(N):
        (server,) = run.server(f"sampled-{i}")
        assert server.trace_id == _trace_id(i, sampled=True)
        assert server.parent_span_id == "b7ad6b7169203331"
        (attempt,) = [s for s in run.trace(server.trace_id) if s.name == ATTEMPT_SPAN]
        assert attempt.parent_span_id == server.span_id
        issuer = [s for s in run.trace(server.trace_id) if s.resource.get("authgw.member") == "a1"]
        assert [s.parent_span_id for s in issuer] == [attempt.span_id]


def test_every_failover_is_traced_with_the_answering_issuer(run: Run) -> None:
    """Each failover (a1 refused, then ejected and passed over) is kept; the attempt on b1 told b1
    'sampled', and b1's span hangs under that exported attempt span."""
    for i in range(N):
        (server,) = run.server(f"fo-{i}")
        spans = run.trace(server.trace_id)
        attempts = {s.attributes["authgw.member"]: s for s in spans if s.name == ATTEMPT_SPAN}
        assert attempts["b1"].attributes["authgw.attempt.outcome"] == "answered"
        assert "a1" in attempts or FAILOVER_EVENT in [name for name, _ in server.events]
        issuer = [s for s in spans if s.resource.get("authgw.member") == "b1"]
        assert [s.parent_span_id for s in issuer] == [attempts["b1"].span_id]


def test_every_standin_decision_is_a_full_trace(run: Run) -> None:
    """Issuers down: each stand-in decision's trace has today's span names, decision attributes on
    the server span, the decide span under it; the first has the attempt on the hung b1 (then ejected)."""
    (first,) = run.server("si-0")
    assert any(
        s.name == ATTEMPT_SPAN and s.attributes["authgw.member"] == "b1" for s in run.trace(first.trace_id)
    )
    for i in range(N):
        answer = run.answers[f"si-{i}"]
        (server,) = run.server(f"si-{i}")
        assert server.attributes["authgw.decision.decision_id"] == answer.decision_id
        spans = run.trace(server.trace_id)
        assert {s.name for s in spans} >= STANDIN_SPANS
        (decide,) = [s for s in spans if s.name == "authgw.standin.decide"]
        assert decide.parent_span_id == server.span_id


async def test_the_bound_drops_and_counts_the_excess(tmp_path: Path, redis_server: ManagedProcess) -> None:
    """tail_max_kept_per_s = 1 and a burst of sampled callers: each request is exported or counted
    as dropped (authgw.traces.dropped), some are dropped, and the gateway says so in its log."""
    burst = 12
    async with OtlpReceiver() as receiver:
        sims = {
            m: traced_sim(tmp_path, p, m, receiver.endpoint)
            for p, m in (("primary", "a1"), ("secondary", "b1"))
        }
        gw, scrape_port = traced_gateway(
            tmp_path, sims, receiver.endpoint, redis_server.port, {**TAIL, "tail_max_kept_per_s": 1}
        )
        try:
            async with grpc.aio.insecure_channel(gw.address) as channel:
                stub = pb_grpc.AuthorizationStub(channel)
                await asyncio.gather(
                    *(
                        stub.Authorize(
                            auth_request(request_id=f"b-{i}"), timeout=5, metadata=(_caller(i, True),)
                        )
                        for i in range(burst)
                    )
                )

            async def counted() -> int:
                text = await asyncio.to_thread(scrape, scrape_port)
                found = re.findall(
                    r'^authgw_traces_dropped[a-z_]*_total\{[^}]*reason="caller"[^}]*\} (\S+)$', text, re.M
                )
                assert found, text
                return int(float(found[0]))

            dropped = await assert_eventually(counted, timeout_s=10)
        finally:
            await asyncio.to_thread(gw.stop, 15)
            for sim in sims.values():
                await asyncio.to_thread(sim.stop, 10)
        kept = {s.attributes["authgw.request_id"] for s in receiver.spans() if s.name == SERVER_SPAN}
    assert kept <= {f"b-{i}" for i in range(burst)}
    assert dropped >= 1
    assert len(kept) + dropped == burst
    assert gw.log_path is not None
    assert "tail sampling: dropping traces above tail_max_kept_per_s=1" in gw.log_path.read_text()
