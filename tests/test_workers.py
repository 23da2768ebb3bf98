"""`authgw serve --workers N`: several gateway processes on one port, stopped together."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.pki import PLAINTEXT, PLAINTEXT_TOML
from chaos.processes import free_port, start_authgw
from chaos.topology import standin_toml
from gateway.config import parse_config
from gateway.workers import worker_config
from tests.gateway_fixtures import auth_request
from tests.helpers import assert_eventually


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(x) for x in out.stdout.split()]


def test_worker_config_separates_instances(tmp_path: Path) -> None:
    """Each worker gets its own instance name, local journal and scrape port (the configured one + i)."""
    (tmp_path / "s.toml").write_text(standin_toml("redis://127.0.0.1:1/0"))
    cfg = parse_config(
        {
            "gateway": {"instance": "gw"},
            **PLAINTEXT,
            "standin": {"config": "s.toml", "sqlite_path": "data/gw.sqlite3"},
            "telemetry": {"prometheus_listen": "127.0.0.1:9464"},
            "pools": [{"name": "p"}],
        },
        str(tmp_path / "x.toml"),
    )
    w0, w1 = worker_config(cfg, 0), worker_config(cfg, 1)
    assert (w0.instance, w1.instance) == ("gw-w0", "gw-w1")
    assert w1.standin is not None and w1.standin.instance == "gw-w1"
    assert w1.standin.sqlite_path == tmp_path / "data" / "gw-w1.sqlite3"
    assert w0.telemetry is not None and w0.telemetry.prometheus_listen == ("127.0.0.1", 9464)
    assert w1.telemetry is not None and w1.telemetry.prometheus_listen == ("127.0.0.1", 9465)
    assert (cfg.share_port, w0.share_port, w1.share_port) == (False, True, True)  # SO_REUSEPORT: workers only
    assert (
        cfg.standin is not None and cfg.standin.sqlite_path == tmp_path / "data" / "gw.sqlite3"
    )  # untouched


def _two_free_ports() -> int:
    """A port P with P and P + 1 both free now (worker i scrapes on P + i)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def _requests_received(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError as exc:  # a worker starts a few seconds after the first: retried
        raise AssertionError(f"scrape port {port}: {exc}") from exc
    return sum(float(v) for v in re.findall(r"^authgw_requests_total\{[^}]*\} (\S+)$", text, re.M))


async def test_two_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    """Two worker processes answer on one port, each counted on its own scrape port; SIGTERM to the
    first stops both."""
    sim_port, gw_port, scrape_port = free_port(), free_port(), _two_free_ports()
    sim = start_authgw(
        tmp_path,
        "sim",
        ["issuer-sim", "--listen", f"127.0.0.1:{sim_port}", "--pool", "p", "--member", "m"],
        sim_port,
    )
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{gw_port}"\n'
        f"{PLAINTEXT_TOML}"
        f'[telemetry]\nprometheus_listen = "127.0.0.1:{scrape_port}"\n'
        f'[[pools]]\nname = "p"\nmembers = [{{ name = "m", address = "127.0.0.1:{sim_port}" }}]\n'
    )
    gw = start_authgw(tmp_path, "gw", ["serve", "--config", str(cfg), "--workers", "2"], gw_port)
    try:
        assert len(_children(gw.pid)) == 1
        answers = []
        for i in range(20):  # fresh channels: the kernel spreads connections over the workers
            async with grpc.aio.insecure_channel(gw.address) as channel:
                stub = pb_grpc.AuthorizationStub(channel)
                answers.append(await stub.Authorize(auth_request(request_id=f"w-{i}"), timeout=5))
        assert all(a.decision == pb.APPROVED and a.source == pb.ISSUER for a in answers)

        async def counted() -> list[float]:  # every request in one worker's count or the other's
            per_worker = [await asyncio.to_thread(_requests_received, scrape_port + i) for i in (0, 1)]
            assert sum(per_worker) == 20, per_worker
            return per_worker

        await assert_eventually(counted, timeout_s=20, interval_s=0.5)
        child = _children(gw.pid)[0]
        gw.signal(signal.SIGTERM)
        assert gw.proc is not None
        assert await asyncio.to_thread(gw.proc.wait, 15) == 0
        with pytest.raises(ProcessLookupError):  # the first worker waited for it: gone and reaped
            os.kill(child, 0)
    finally:
        gw.stop()
        sim.stop()


def _gateway_toml(path: Path, gw_port: int, sim_port: int) -> Path:
    path.write_text(
        f'[gateway]\nlisten = "127.0.0.1:{gw_port}"\n'
        f"{PLAINTEXT_TOML}"
        f'[[pools]]\nname = "p"\nmembers = [{{ name = "m", address = "127.0.0.1:{sim_port}" }}]\n'
    )
    return path


def test_a_second_gateway_on_a_taken_port_fails_naming_the_address(tmp_path: Path) -> None:
    """Outside --workers the port is not shared: a second `authgw serve` on it exits 1, naming it."""
    gw_port = free_port()
    cfg = _gateway_toml(tmp_path / "gw.toml", gw_port, free_port())  # no issuer needed to bind
    first = start_authgw(tmp_path, "gw", ["serve", "--config", str(cfg)], gw_port)
    try:
        argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)]
        second = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1, second.stderr[-2000:]
        assert f"cannot listen on 127.0.0.1:{gw_port}" in second.stderr
        assert first.proc is not None and first.proc.poll() is None  # the first one is untouched
    finally:
        first.stop()
