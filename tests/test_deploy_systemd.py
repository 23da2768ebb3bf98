"""authgw runs under its systemd units' seccomp rules (MemoryDenyWriteExecute, SystemCallFilter, ...).

No systemd manager runs in a test container, so each process is started under
its own unit's rules by tests/deploy_sandbox.py, which installs the same filter
systemd would. The gateway runs with uvloop, gRPC, the Prometheus exporter,
Redis (hiredis), SQLite and AES-GCM; `authgw settle` advises what stand-in
decided; a health agent registers its host in etcd. `make deploy-check` runs
systemd-analyze verify and security on the same files.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.processes import ManagedProcess, free_port
from chaos.topology import Topology, TopologySpec, to_toml
from tests.deploy_sandbox import available
from tests.deploy_scenario import authgw_cli
from tests.gateway_fixtures import auth_request
from tests.helpers import assert_eventually

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy/systemd"
SANDBOX = ROOT / "tests/deploy_sandbox.py"

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

# What the unit's rules refuse, each tried once: the filter is installed, not a no-op.
PROBE = """
import ctypes, errno, json, mmap, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
c = ctypes
libc.mmap.argtypes = [c.c_void_p, c.c_size_t, c.c_int, c.c_int, c.c_int, c.c_long]
anon = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
wx = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC, anon, -1, 0)
out = {"mmap W+X": "ok" if wx not in (None, 2**64 - 1) else errno.errorcode[ctypes.get_errno()]}
rw = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE, anon, -1, 0)
failed = libc.mprotect(ctypes.c_void_p(rw), 4096, mmap.PROT_READ | mmap.PROT_EXEC)
out["mprotect +X"] = errno.errorcode[ctypes.get_errno()] if failed else "ok"
nice = os.getpriority(os.PRIO_PROCESS, 0)
for name, call in {
    "AF_PACKET socket": lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close(),
    "setpriority (@resources)": lambda: os.setpriority(os.PRIO_PROCESS, 0, nice),
    "AF_INET socket": lambda: socket.socket().close(),
}.items():
    try:
        call()
        out[name] = "ok"
    except OSError as exc:
        out[name] = errno.errorcode[exc.errno]
print(json.dumps(out))
"""


def _under(unit: str, argv: list[str]) -> list[str]:
    return [sys.executable, str(SANDBOX), str(UNITS / unit), "--", *argv]


def _authgw(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *args]


def _probe(argv: list[str]) -> dict[str, str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    result: dict[str, str] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    "unit", ["authgw-gateway.service", "authgw-settle.service", "authgw-health-agent@.service"]
)
def test_unit_rules_are_enforced(unit: str) -> None:
    """Under the unit's rules W+X memory, +X mprotect, AF_PACKET and @resources fail; outside they work."""
    assert set(_probe([sys.executable, "-c", PROBE]).values()) == {"ok"}
    assert _probe(_under(unit, [sys.executable, "-c", PROBE])) == {
        "mmap W+X": "EPERM",
        "mprotect +X": "EPERM",
        "AF_PACKET socket": "EAFNOSUPPORT",
        "setpriority (@resources)": "EPERM",
        "AF_INET socket": "ok",
    }


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """etcd, Redis, issuer hosts and their agents; no gateway (the test starts it sandboxed)."""
    spec = TopologySpec(pools={"primary": ("a1",), "secondary": ("b1",)}, etcd=True, redis=True, gateways=0)
    topo = Topology(tmp_path_factory.mktemp("units"), spec).start()
    yield topo
    topo.stop()


def _start(
    topo: Topology, name: str, argv: list[str], port: int, *, wait_port: bool = True
) -> ManagedProcess:
    env = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = ManagedProcess(name, argv, port, topo.workdir, env=env).start(wait_port=wait_port, timeout_s=30)
    topo.gateways.append(proc)  # stopped with the topology, whatever happens
    return proc


def _log_is_clean(proc: ManagedProcess) -> None:
    assert proc.log_path is not None
    text = proc.log_path.read_text()
    assert "Traceback" not in text and "Operation not permitted" not in text, text[-3000:]


async def test_gateway_settle_and_agent_run_under_their_units(topology: Topology) -> None:
    """Sandboxed: issuer and stand-in answers, settle advises, an agent registers, SIGTERM drains all."""
    port, scrape = free_port(), free_port()
    doc = topology.gateway_config(0, port)
    doc["telemetry"] = {"exporter": "none", "prometheus_listen": f"127.0.0.1:{scrape}"}
    doc["settlement"] = {"enabled": False}  # authgw settle does it, under its own unit
    gateway_toml = topology.workdir / "gateway-1.toml"
    gateway_toml.write_text(to_toml(doc))
    settle_doc = doc | {"telemetry": {"exporter": "none", "prometheus_listen": f"127.0.0.1:{free_port()}"}}
    settle_toml = topology.workdir / "settle.toml"
    settle_toml.write_text(to_toml(settle_doc))

    gateway = _start(
        topology,
        "gw-sandboxed",
        _under("authgw-gateway.service", _authgw("serve", "--config", str(gateway_toml))),
        port,
    )
    async with topology.acquirer_channel(gateway.address) as channel:
        stub = pb_grpc.AuthorizationStub(channel)
        answer = await stub.Authorize(auth_request(request_id="unit-iss"), timeout=5)
        assert answer.source == pb.ISSUER
        await asyncio.to_thread(authgw_cli, "mode", "force-standin", topo=topology)
        tries = iter(range(1000))

        async def standin() -> str:
            answer = await stub.Authorize(auth_request(request_id=f"unit-si-{next(tries)}"), timeout=5)
            assert (answer.source, answer.decision) == (pb.STAND_IN, pb.APPROVED)
            return str(answer.decision_id)

        decided: str = await assert_eventually(standin, timeout_s=10, interval_s=0.2)
        assert decided
        await asyncio.to_thread(authgw_cli, "mode", "auto", topo=topology)

    settle = _start(
        topology,
        "settle-sandboxed",
        _under("authgw-settle.service", _authgw("settle", "--config", str(settle_toml))),
        topology.etcd[0].port,
        wait_port=False,
    )

    def balanced() -> int:
        """Decisions the issuer acknowledged, once every journaled one is."""
        report = json.loads(authgw_cli("standin", "reconcile", "--config", str(gateway_toml), topo=topology))
        assert report["balanced"] and report["acknowledged"]["count"] >= 1, report
        return int(report["acknowledged"]["count"])

    async def settled() -> int:
        return await asyncio.to_thread(balanced)

    acknowledged: int = await assert_eventually(settled, timeout_s=30, interval_s=1)
    assert acknowledged >= 1

    topology.start_sim("c1", "primary")  # a new host of a pool etcd-auth knows (its agent's user)
    agent_args = topology.agent_args("c1", "primary")
    agent = _start(
        topology,
        "agent-sandboxed",
        _under("authgw-health-agent@.service", _authgw(*agent_args)),
        topology.etcd[0].port,
        wait_port=False,
    )
    await asyncio.to_thread(topology.wait_registered, {"c1"})

    for proc in (gateway, settle, agent):
        assert proc.alive(), proc.tail_log()
        proc.signal(signal.SIGTERM)
    for proc in (gateway, settle, agent):
        assert proc.proc is not None
        assert await asyncio.to_thread(proc.proc.wait, 30) == 0, proc.tail_log()
        _log_is_clean(proc)
    assert "c1" not in topology.registered_members()  # the agent revoked its lease on SIGTERM
