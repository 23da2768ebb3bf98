"""End to end through processes: `authgw serve`, `python -m chaos issuer-sim`, `authgw authorize`."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.pki import PLAINTEXT_TOML, DevPki
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.sim_control import SimControl
from chaos.topology import to_toml
from tests.gateway_fixtures import auth_request
from tests.helpers import PAN_VISA

_PKI: dict[str, DevPki] = {}


def _acquirer_flags() -> list[str]:
    """What an acquirer gives `authgw authorize`: its certificate, key and the gateway's CA."""
    f = _PKI["pki"].acquirer_files("1001")
    return ["--cert", str(f.cert), "--key", str(f.key), "--ca", str(f.ca)]


def _authorize(target: str, *extra: str, tls: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gateway.cli", "authorize", "--target", target, *extra]
    if tls:
        argv += _acquirer_flags()
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ManagedProcess]]:
    """One simulator per pool and a gateway process with a static config, mutual TLS everywhere."""
    workdir: Path = tmp_path_factory.mktemp("e2e")
    pki = _PKI["pki"] = DevPki(workdir / "pki")
    procs: dict[str, ManagedProcess] = {}
    for pool, member in (("primary", "a1"), ("secondary", "b1")):
        port = free_port()
        args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", pool, "--member", member]
        procs[member] = start_authgw(workdir, member, [*args, *pki.issuer_sim_args(pool)], port)
    gw_port = free_port()
    cfg = workdir / "gateway.toml"
    doc = {
        "gateway": {"listen": f"127.0.0.1:{gw_port}", "drain_timeout": "3s"},
        **pki.gateway_sections(),
        "pools": [
            {
                "name": pool,
                "server_name": f"{pool}.issuer.authgw.test",
                "members": [{"name": member, "address": procs[member].address}],
            }
            for pool, member in (("primary", "a1"), ("secondary", "b1"))
        ],
    }
    cfg.write_text(to_toml(doc))
    procs["gw"] = start_authgw(workdir, "gw", ["serve", "--config", str(cfg)], gw_port)
    yield procs
    for proc in procs.values():
        proc.stop()


def test_authorize_approved_by_primary(topology: dict[str, ManagedProcess]) -> None:
    """`authgw authorize` prints one JSON object: approved by the primary pool's issuer."""
    out = _authorize(topology["gw"].address, "--pan", PAN_VISA, "--amount", "12.34", "--request-id", "e2e-1")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["decision"] == "APPROVED"
    assert answer["source"] == "ISSUER"
    assert answer["pool"] == "primary"
    assert answer["request_id"] == "e2e-1"
    assert len(answer["approval_code"]) == 6


def test_authorize_invalid_field_exits_nonzero(topology: dict[str, ManagedProcess]) -> None:
    """An invalid PAN gives INVALID_ARGUMENT on stderr naming the field, and a non-zero exit."""
    out = _authorize(topology["gw"].address, "--pan", "4111111111111112", "--amount", "1.00")
    assert out.returncode != 0
    assert "INVALID_ARGUMENT" in out.stderr
    assert "pan" in out.stderr


def test_bad_config_names_key(tmp_path: Path) -> None:
    """`authgw serve` with a wrong key exits 2 naming the file and the key."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[routing]\ndeadline = "soon"\n[[pools]]\nname = "p"\n')
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2
    assert "bad.toml: routing.deadline: expected a duration" in out.stderr


async def test_sigterm_drains_in_flight(topology: dict[str, ManagedProcess]) -> None:
    """SIGTERM while a slow request is in flight: the request is answered, then the gateway exits 0."""
    pki = _PKI["pki"]
    async with SimControl(topology["a1"].address, tls=pki.files("operator")) as ctl:
        await ctl.set_faults(latency_ms=300)
    gw = topology["gw"]
    async with grpc.aio.secure_channel(gw.address, pki.acquirer_credentials("1001")) as channel:
        stub = pb_grpc.AuthorizationStub(channel)
        call = asyncio.ensure_future(stub.Authorize(auth_request(request_id="drain-1"), timeout=5))
        await asyncio.sleep(0.1)
        gw.signal(signal.SIGTERM)
        resp = await call
    assert resp.response_code == "00"
    assert resp.pool == "primary"
    assert gw.proc is not None
    assert await asyncio.to_thread(gw.proc.wait, 10) == 0


def test_authorize_needs_the_acquirers_certificate(topology: dict[str, ManagedProcess]) -> None:
    """Without --cert/--key/--ca the command says what is missing; --insecure against the TLS gateway
    fails the handshake (UNAVAILABLE), and a plaintext warning is printed first."""
    address = topology["gw"].address
    out = _authorize(address, "--pan", PAN_VISA, "--amount", "1.00", tls=False)
    assert out.returncode != 0 and "--cert, --key, --ca missing" in out.stderr
    out = _authorize(address, "--pan", PAN_VISA, "--amount", "1.00", "--insecure", tls=False)
    assert out.returncode == 1 and "UNAVAILABLE" in out.stderr and "plaintext" in out.stderr


def test_secondary_answers_when_primary_killed(topology: dict[str, ManagedProcess]) -> None:
    """With the primary simulator killed, the same command is answered by the secondary pool."""
    gw = topology["gw"]
    if not gw.alive():
        gw.start()
    topology["a1"].kill()
    out = _authorize(gw.address, "--pan", PAN_VISA, "--amount", "12.34")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert (answer["decision"], answer["pool"]) == ("APPROVED", "secondary")


def test_port_in_use_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """`authgw serve` on a port another process listens on exits 1 with one line naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "gw.toml"
        cfg.write_text(f'[gateway]\nlisten = "127.0.0.1:{port}"\n{PLAINTEXT_TOML}[[pools]]\nname = "p"\n')
        argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--log-format", "text"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 1
    assert f"authgw serve: cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
