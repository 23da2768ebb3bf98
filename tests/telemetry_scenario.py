"""One traced scenario through real processes, for the telemetry tests.

An OTLP receiver in the test process; two issuer-sim processes (primary a1,
secondary b1) and an `authgw serve` process with stand-in, all exporting to it.
Known PANs go through every path: the primary issuer, failover to the secondary
(primary killed), stand-in (every host hung), and an invalid request. Then the
gateway and the secondary are stopped gracefully, which flushes what they
buffered, and everything that left them is returned for inspection.
"""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.otlp_receiver import OtlpReceiver, ReceivedSpan
from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.topology import standin_toml, to_toml
from gateway.tracing import SERVER_SPAN
from tests.gateway_fixtures import auth_request
from tests.helpers import assert_eventually

# Luhn-valid cards run through every path. Their 5-digit prefixes lie above the ephemeral port
# range (32768-60999), so a port number in an address cannot look like a leaked prefix, and their
# digits are distinctive (tests/pan_scan.py: no pattern of theirs occurs by chance).
PANS = ("6819352740618528", "7392648150372966", "971538602491734", "8642071935486272", "705291638473051")
INVALID_PAN = "6819352740618527"  # fails the Luhn check: INVALID_ARGUMENT, never routed

FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "300"}


@dataclass
class Scenario:
    """What the processes exported, logged and answered."""

    spans: list[ReceivedSpan]
    trace_payloads: list[bytes]
    metric_payloads: list[bytes]
    metric_names: set[str]
    gateway_log: str
    prometheus_text: str
    answers: dict[str, pb.AuthorizeResponse] = field(default_factory=dict)  # by request_id
    invalid_status: str = ""
    redis_port: int = 0

    def server_span(self, request_id: str) -> ReceivedSpan:
        (span,) = [
            s
            for s in self.spans
            if s.name == SERVER_SPAN and s.attributes.get("authgw.request_id") == request_id
        ]
        return span

    def children(self, parent: ReceivedSpan, name: str | None = None) -> list[ReceivedSpan]:
        return [
            s
            for s in self.spans
            if s.trace_id == parent.trace_id
            and s.parent_span_id == parent.span_id
            and (name is None or s.name == name)
        ]


def traced_sim(workdir: Path, pool: str, member: str, endpoint: str) -> ManagedProcess:
    """An issuer-sim process exporting its traces to `endpoint`."""
    port = free_port()
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", pool, "--member", member]
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_METRICS_EXPORTER": "none", **FAST_EXPORT}
    return start_authgw(workdir, f"sim-{member}", args, port, env=env)


def traced_gateway(
    workdir: Path,
    sims: dict[str, ManagedProcess],
    endpoint: str,
    redis_port: int,
    telemetry: Mapping[str, Any] | None = None,
) -> tuple[ManagedProcess, int]:
    """The gateway process and its Prometheus scrape port (`telemetry`: more [telemetry] keys)."""
    standin = workdir / "standin.toml"
    # A generous Redis deadline: on a loaded test machine decisions still go to the stream.
    text = standin_toml(f"redis://127.0.0.1:{redis_port}/2")
    standin.write_text(text.replace("[redis]\n", '[redis]\ncommand_deadline = "1s"\n', 1))
    port, scrape = free_port(), free_port()
    doc = {
        "gateway": {"listen": f"127.0.0.1:{port}", "instance": "gw-otel", "drain_timeout": "3s"},
        **PLAINTEXT,
        "routing": {"attempt_timeout": "200ms"},
        "outlier": {"consecutive_failures": 2, "max_ejection_share": 1.0},
        "standin": {"config": str(standin), "sqlite_path": str(workdir / "gw-otel.sqlite3")},
        "settlement": {"enabled": False},  # the tests read the journal as stand-in left it
        **observed_pools(endpoint, scrape, sims),
    }
    doc["telemetry"].update(telemetry or {})
    config = workdir / "gateway.toml"
    config.write_text(to_toml(doc))
    return start_authgw(workdir, "gw-otel", ["serve", "--config", str(config)], port, env=FAST_EXPORT), scrape


def observed_pools(endpoint: str, scrape_port: int, sims: dict[str, ManagedProcess]) -> dict[str, Any]:
    """The `[telemetry]` (OTLP to `endpoint`, Prometheus on `scrape_port`) and `[[pools]]` of a gateway
    config over the simulators a1 (primary) and b1 (secondary)."""
    return {
        "telemetry": {
            "exporter": "otlp",
            "otlp_endpoint": endpoint,
            "prometheus_listen": f"127.0.0.1:{scrape_port}",
            "metric_export_interval": "300ms",
        },
        "pools": [
            {"name": "primary", "priority": 1, "members": [{"name": "a1", "address": sims["a1"].address}]},
            {"name": "secondary", "priority": 2, "members": [{"name": "b1", "address": sims["b1"].address}]},
        ],
    }


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


async def run_scenario(workdir: Path, receiver: OtlpReceiver, redis_port: int) -> Scenario:
    """Drive every path with PANS; return what left the processes."""
    sims = {"a1": traced_sim(workdir, "primary", "a1", receiver.endpoint)}
    sims["b1"] = traced_sim(workdir, "secondary", "b1", receiver.endpoint)
    gw, scrape_port = traced_gateway(workdir, sims, receiver.endpoint, redis_port)
    answers: dict[str, pb.AuthorizeResponse] = {}
    invalid = ""
    try:
        async with grpc.aio.insecure_channel(gw.address) as channel:
            stub = pb_grpc.AuthorizationStub(channel)

            async def send(rid: str, pan: str) -> None:
                answers[rid] = await stub.Authorize(auth_request(request_id=rid, pan=pan), timeout=5)

            for i, pan in enumerate(PANS):
                await send(f"iss-{i}", pan)

            async def primary_exported() -> None:
                assert any(s.resource.get("authgw.member") == "a1" for s in receiver.spans())

            await assert_eventually(primary_exported, timeout_s=10)
            sims["a1"].kill()
            for i, pan in enumerate(PANS):
                await send(f"fo-{i}", pan)
            sims["b1"].signal(signal.SIGSTOP)
            for i, pan in enumerate(PANS):
                await send(f"si-{i}", pan)
            try:
                await stub.Authorize(auth_request(request_id="bad-1", pan=INVALID_PAN), timeout=5)
            except grpc.aio.AioRpcError as exc:
                invalid = exc.code().name
            sims["b1"].signal(signal.SIGCONT)
            prometheus = await asyncio.to_thread(scrape, scrape_port)
    finally:
        await asyncio.to_thread(gw.stop, 15)
        for sim in sims.values():
            await asyncio.to_thread(sim.stop, 10)

    async def flushed() -> None:
        spans = receiver.spans()
        assert any(s.name == "authgw.standin.decide" for s in spans)
        assert any(s.resource.get("authgw.member") == "b1" for s in spans)
        assert "authgw.decisions" in receiver.metric_names()

    await assert_eventually(flushed, timeout_s=15)
    assert gw.log_path is not None
    return Scenario(
        spans=receiver.spans(),
        trace_payloads=list(receiver.trace_payloads),
        metric_payloads=list(receiver.metric_payloads),
        metric_names=receiver.metric_names(),
        gateway_log=gw.log_path.read_text(),
        prometheus_text=prometheus,
        answers=answers,
        invalid_status=invalid,
        redis_port=redis_port,
    )
