"""Several gateway processes on one port (SO_REUSEPORT): one per core, each a full gateway.

A Python process uses one core for its event loop, and gRPC's per-call cost
dominates the gateway's CPU; the kernel spreads connections across the worker
processes that share the listening port. Each worker is a gateway of the fleet
in its own right: its own instance name (`<instance>-w<i>`, so its etcd
registration, stand-in decisions and settlement consumer are its own), its own
local SQLite journal, and its own Prometheus endpoint: worker i listens on the
configured `prometheus_listen` port + i (port 0: any free port for each), so
every worker is a scrape target of its own and `authgw top` or Prometheus sum
them. Limits stay fleet-wide through Redis, as between gateways.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Sequence

from gateway.config import GatewayConfig

__all__ = ["spawn_workers", "stop_workers", "worker_config"]


def worker_config(cfg: GatewayConfig, index: int) -> GatewayConfig:
    """Worker `index`: its own instance and local journal, the port shared, scrape port + index."""
    journal = None
    if cfg.standin is not None:
        path = cfg.standin.sqlite_path
        journal = path.with_name(f"{path.stem}-w{index}{path.suffix}")
    worker = dataclasses.replace(cfg.for_instance(f"{cfg.instance}-w{index}", journal), share_port=True)
    telemetry = worker.telemetry
    if index > 0 and telemetry is not None and telemetry.prometheus_listen is not None:
        host, port = telemetry.prometheus_listen
        listen = (host, port + index if port else 0)
        worker = dataclasses.replace(
            worker, telemetry=dataclasses.replace(telemetry, prometheus_listen=listen)
        )
    return worker


def spawn_workers(argv: Sequence[str], count: int) -> list[subprocess.Popen[bytes]]:
    """Start workers 1..count-1 as child processes running the same command with --worker-index."""
    return [
        subprocess.Popen([sys.executable, "-m", "gateway.cli", *argv, "--worker-index", str(i)])
        for i in range(1, count)
    ]


def stop_workers(children: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """SIGTERM every child (they drain), then wait; SIGKILL what is still there after timeout_s."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
