"""A real gateway with a Prometheus endpoint, driven so that every series an operator watches exists.

etcd, Redis, two issuer-sim processes with their health agents (pools primary
a1 and secondary b1) and an `authgw serve` with `[telemetry] prometheus_listen`,
as a platform team would run them. Requests go through the issuer, a failover
after the primary host dies (its member ejected), a reversal (stored for
settlement), a forced stand-in (`authgw mode force-standin`, the
runbook's command) and a refusal (a request id reused with other content);
then the scrape is returned once the series those paths create are in it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import grpc

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.processes import free_port
from chaos.topology import Topology, TopologySpec
from tests.gateway_fixtures import auth_request
from tests.helpers import PAN_MC, assert_eventually

_CHECKOUT = str(Path(__file__).resolve().parent.parent)

# Series that only exist once the scenario's paths ran (counters appear on their first add).
SCENARIO_SERIES = (
    "authgw_decisions_total",
    "authgw_ejections_total",
    "authgw_refusals_total",
    "authgw_reversals_total",
    "authgw_settlement_advices_total",
    "authgw_fleet_gateways",
    'store="dead_letters"',
    "authgw_standin_exposure{",
    "authgw_standin_exposure_budget{",
    "authgw_admission_limit",
    "authgw_standin_policy_version",
)
# An exposure budget, so that the gateway exports its gauges (the forced stand-in draws on it).
BUDGET_TOML = """
[[policy.exposure_budgets]]
period = "1h"
max_amount_minor = 50_000_000
"""


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def authgw_cli(*args: str, topo: Topology, env: Mapping[str, str] | None = None) -> str:
    """Run `authgw ARGS` (this checkout's code) as an operator would (its etcd certificate); its stdout.
    `env`: more environment variables (e.g. COLUMNS for a wide `authgw top`)."""
    env = {**os.environ, "PYTHONPATH": _CHECKOUT, **topo.operator_env(), **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def run_scenario(workdir: Path) -> str:
    """Drive the paths above through a fresh topology; the gateway's Prometheus text."""
    scrape_port = free_port()
    telemetry = {"exporter": "none", "prometheus_listen": f"127.0.0.1:{scrape_port}"}
    spec = TopologySpec(
        pools={"primary": ("a1",), "secondary": ("b1",)},
        etcd=True,
        redis=True,
        standin_policy_toml=BUDGET_TOML,
        gateway_extra={
            "telemetry": telemetry | {"metric_export_interval": "300ms"},
            # one failure ejects, even the only member of a pool: the dead primary host is ejected at once
            "outlier": {"consecutive_failures": 1, "max_ejection_share": 1.0},
            # admission control on (its metrics exported), with room for every request here
            "admission": {"enabled": True},
        },
    )
    topo = Topology(workdir, spec)
    await asyncio.to_thread(topo.start)
    try:
        async with topo.acquirer_channel(topo.gateways[0].address) as channel:
            stub = pb_grpc.AuthorizationStub(channel)
            for i in range(3):
                answer = await stub.Authorize(auth_request(request_id=f"iss-{i}"), timeout=5)
                assert answer.source == pb.ISSUER, answer
            topo.sims["a1"].kill()
            answer = await stub.Authorize(auth_request(request_id="fo-0"), timeout=5)
            assert (answer.source, answer.pool) == (pb.ISSUER, "secondary"), answer
            await stub.Authorize(auth_request(request_id="iss-mc", pan=PAN_MC), timeout=5)
            reversal = pb.ReverseRequest(
                acquirer_id="1001",
                reversal_id="rev-iss-mc",
                original_request_id="iss-mc",
                pan=PAN_MC,
                final_amount_minor=0,
                reason=pb.CARDHOLDER_CANCEL,
                currency="EUR",
            )
            await stub.Reverse(reversal, timeout=5)

            await asyncio.to_thread(authgw_cli, "mode", "force-standin", topo=topo)
            tries = iter(range(1000))

            async def forced() -> str:
                """The id of the first request stand-in answered: the gateway has seen the forced mode."""
                request = auth_request(request_id=f"si-wait-{next(tries)}")
                assert (await stub.Authorize(request, timeout=5)).source == pb.STAND_IN
                return str(request.request_id)

            first: str = await assert_eventually(forced, timeout_s=10, interval_s=0.2)
            assert first.startswith("si-wait-")
            for i in range(3):
                await stub.Authorize(auth_request(request_id=f"si-{i}"), timeout=5)
            try:
                await stub.Authorize(auth_request(request_id="si-0", amount_minor=999), timeout=5)
                raise AssertionError("a reused request id with other content was answered")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() is grpc.StatusCode.ALREADY_EXISTS
            await asyncio.to_thread(authgw_cli, "mode", "auto", topo=topo)

        async def complete() -> str:
            text = await asyncio.to_thread(_scrape, scrape_port)
            missing = [s for s in SCENARIO_SERIES if s not in text]
            assert not missing, missing
            return text

        return await assert_eventually(complete, timeout_s=20, interval_s=0.5)
    finally:
        await asyncio.to_thread(topo.stop)
