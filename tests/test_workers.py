"""`authgw serve --workers N`: several gateway processes on one port, stopped together."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
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


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(x) for x in out.stdout.split()]


def test_worker_config_separates_instances(tmp_path: Path) -> None:
    """Each worker gets its own instance name and local journal; only worker 0 keeps the scrape port."""
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
    assert w1.telemetry is not None and w1.telemetry.prometheus_listen is None
    assert (cfg.share_port, w0.share_port, w1.share_port) == (False, True, True)  # SO_REUSEPORT: workers only
    assert (
        cfg.standin is not None and cfg.standin.sqlite_path == tmp_path / "data" / "gw.sqlite3"
    )  # untouched


async def test_two_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    """Two worker processes answer on one port; SIGTERM to the first stops both."""
    sim_port, gw_port = free_port(), free_port()
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
