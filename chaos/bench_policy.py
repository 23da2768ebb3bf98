"""`make bench-policy`: how long a new live stand-in policy takes to reach every gateway's engine.

One etcd with TLS and client certificates on loopback; N followers (gateway.policy_watch,
each with its own etcd client and gateway certificate, as N gateways have) each hold a
LivePolicy. Each round writes a new version to /authgw/standin/policy (what an approval
writes) and measures the time until every follower decides under it: etcd's write, the
watch event, validation of the TOML and the swap. Polled every millisecond (the resolution).

    python -m chaos.bench_policy [--followers 8] [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from authgw.security import TlsFiles, TransportSecurity
from chaos.pki import DevPki
from chaos.processes import start_etcd
from gateway.policy_store import PolicyRecord, digest
from gateway.policy_watch import PolicyWatch
from health.endpoints import Endpoint
from health.etcd import EtcdClient
from health.keys import KeyLayout
from standin.policy import StandInPolicy
from standin.policy_live import FILE_VERSION, LivePolicy, VersionedPolicy

__all__ = ["main"]

KEY = KeyLayout().standin_policy()


def _client(pki: DevPki, port: int, leaf: str) -> EtcdClient:
    f = pki.files(leaf)
    security = TransportSecurity.mutual_tls(TlsFiles(cert=f.cert, key=f.key, ca=f.ca))
    return EtcdClient([Endpoint("127.0.0.1", port, "https")], security=security, request_timeout_s=2.0)


def _record(version: int) -> bytes:
    text = f"[policy.window.purchase]\nmax_amount_minor = {100_000 + version}\nmax_count = 15\n"
    return PolicyRecord(version, text, digest(text), "bench", "alice", "bob", "").to_json()


async def _rounds(writer: EtcdClient, followers: list[LivePolicy], rounds: int) -> list[float]:
    took: list[float] = []
    for version in range(1, rounds + 1):
        started = time.perf_counter()
        await writer.put(KEY, _record(version))
        while any(live.version != version for live in followers):  # noqa: ASYNC110 -- no change callback: polled
            await asyncio.sleep(0.001)
        took.append((time.perf_counter() - started) * 1000)
    return took


async def _bench(n: int, rounds: int, workdir: Path) -> list[float]:
    pki = DevPki(workdir / "pki")
    etcd = await asyncio.to_thread(start_etcd, workdir / "etcd", tls=pki.files("etcd"), client_cert_auth=True)
    clients = [_client(pki, etcd.port, f"gateway-client-gw-{1 + i % 3}") for i in range(n)]
    writer = _client(pki, etcd.port, "etcd-root")
    seed = VersionedPolicy(StandInPolicy(), FILE_VERSION, "bench")
    followers = [LivePolicy(seed) for _ in range(n)]
    watches = [PolicyWatch(c, KEY, live) for c, live in zip(clients, followers, strict=True)]
    try:
        for watch in watches:
            await watch.start()
        return await _rounds(writer, followers, rounds)
    finally:
        for watch in watches:
            await watch.close()
        for c in [*clients, writer]:
            await c.close()
        await asyncio.to_thread(etcd.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.bench_policy", description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, default=8, help="gateways following the key")
    parser.add_argument("--rounds", type=int, default=50, help="versions written, one at a time")
    args = parser.parse_args(argv)
    logging.getLogger("authgw.standin.policy").setLevel(logging.ERROR)  # one line per version and follower
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-policy-"))
    try:
        took = asyncio.run(_bench(args.followers, args.rounds, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = Table(
        title=f"new live policy version → applied by all {args.followers} followers (etcd TLS, loopback)"
    )
    for col in ("rounds", "p50 ms", "p99 ms", "max ms", "mean ms"):
        table.add_column(col, justify="right")
    ordered = sorted(took)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    table.add_row(
        str(len(took)), f"{statistics.median(took):.1f}", f"{p99:.1f}", f"{ordered[-1]:.1f}",
        f"{statistics.fmean(took):.1f}",
    )  # fmt: skip
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
