"""What mutual TLS costs: the gateway and a direct call, each in plaintext and with TLS.

    python -m chaos.bench_tls [--rounds 5] [--seconds 5] [--workers 2] [--concurrency 32]

Four targets in front of issuer simulators of their own kind (a plaintext one, a TLS one):

    direct-plain   client -> issuer host                          (the floor)
    direct-tls     client =TLS=> issuer host                      (the floor, with TLS)
    authgw-plain   client -> gateway -> issuer host
    authgw-tls     client =TLS=> gateway =TLS=> issuer host        (what a bank runs)

The load is a closed loop of grpc.aio clients (h2load cannot present a client
certificate, so the same Python client drives every target: the same transport),
`--workers` processes x `--concurrency` calls in flight, over long-lived
connections (handshakes are not what is measured: connections are reused, as an
acquirer's are). Rounds are interleaved (A B C D, A B C D, ...); reported: the
median and the spread (min-max) of answers/s, and CPU microseconds per answer of
the target's own process (the gateway; for direct, the issuer host). The cost of
TLS is authgw-tls against authgw-plain, beside the floor's own difference.

Benchmarks print numbers; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from authgw.v1 import authorization_pb2 as pb
from chaos.bench_cpu import cpu_seconds
from chaos.bench_h2load import bench_request
from chaos.bench_openloop import METHOD_GATEWAY, METHOD_ISSUER
from chaos.pki import PLAINTEXT, DevPki
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.topology import to_toml

__all__ = ["main"]

TARGETS = ("direct-plain", "direct-tls", "authgw-plain", "authgw-tls")


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    address: str
    method: str
    process: ManagedProcess  # whose CPU is charged to the target
    tls: bool


@dataclass
class Samples:
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    failed: int = 0


class Rig:
    """Two issuer simulators (plaintext, TLS) and two gateways in front of them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pki = DevPki(workdir / "pki")
        self._procs: list[ManagedProcess] = []
        self.targets: dict[str, Target] = {}

    def start(self) -> Rig:
        plain_sim = self._sim("plain", tls=False)
        tls_sim = self._sim("tls", tls=True)
        plain_gw = self._gateway("plain", plain_sim, tls=False)
        tls_gw = self._gateway("tls", tls_sim, tls=True)
        self.targets = {
            "direct-plain": Target("direct-plain", plain_sim.address, METHOD_ISSUER, plain_sim, tls=False),
            "direct-tls": Target("direct-tls", tls_sim.address, METHOD_ISSUER, tls_sim, tls=True),
            "authgw-plain": Target("authgw-plain", plain_gw.address, METHOD_GATEWAY, plain_gw, tls=False),
            "authgw-tls": Target("authgw-tls", tls_gw.address, METHOD_GATEWAY, tls_gw, tls=True),
        }
        return self

    def _sim(self, name: str, *, tls: bool) -> ManagedProcess:
        port = free_port()
        args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", name]
        args += ["--uvloop", *(self.pki.issuer_sim_args("primary") if tls else [])]
        return self._own(start_authgw(self.workdir, f"sim-{name}", args, port))

    def _gateway(self, name: str, sim: ManagedProcess, *, tls: bool) -> ManagedProcess:
        port = free_port()
        pool = {"name": "primary", "priority": 1, "members": [{"name": "a1", "address": sim.address}]}
        if tls:
            pool["server_name"] = "primary.issuer.authgw.test"
        doc = {
            "gateway": {"listen": f"127.0.0.1:{port}", "instance": f"gw-{name}"},
            **(self.pki.gateway_sections() if tls else PLAINTEXT),
            "pools": [pool],
        }
        path = self.workdir / f"gateway-{name}.toml"
        path.write_text(to_toml(doc))
        args = ["serve", "--config", str(path), "--log-level", "WARNING"]
        return self._own(
            start_authgw(self.workdir, f"gw-{name}", args, port, env={"OTEL_SDK_DISABLED": "true"})
        )

    def _own(self, proc: ManagedProcess) -> ManagedProcess:
        self._procs.append(proc)
        return proc

    def processes(self) -> Iterator[ManagedProcess]:
        return iter(self._procs)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()


# -- the load worker (a child process) -------------------------------------------------------


def _open(target: str, tls: object) -> grpc.aio.Channel:
    if not isinstance(tls, dict):
        return grpc.aio.insecure_channel(target)
    files = [Path(tls[k]).read_bytes() for k in ("ca", "key", "cert")]
    return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(*files))


async def _closed_loop(spec: dict[str, object]) -> dict[str, float]:
    target, method = str(spec["address"]), str(spec["method"])
    channel = _open(target, spec.get("tls"))
    body = bench_request(f"bench-tls-{time.time_ns()}").SerializeToString()
    ok = failed = 0
    async with channel:
        call: Any = channel.unary_unary(method, response_deserializer=pb.AuthorizeResponse.FromString)
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        await call(body, timeout=5)  # warm: the connection is made before the clock starts
        print("ready", flush=True)
        start_at = float(await asyncio.to_thread(sys.stdin.readline))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = time.monotonic() + float(spec["seconds"])  # type: ignore[arg-type]

        async def loop() -> None:
            nonlocal ok, failed
            while time.monotonic() < end:
                try:
                    await call(body, timeout=5)
                    ok += 1
                except grpc.aio.AioRpcError:
                    failed += 1

        await asyncio.gather(*(loop() for _ in range(int(spec["concurrency"]))))  # type: ignore[call-overload]
    return {"ok": ok, "failed": failed}


async def _load(
    target: Target, pki: DevPki, workers: int, concurrency: int, seconds: float
) -> tuple[int, int, float, float]:
    """Run the workers against `target`; (answers, failures, wall seconds, target CPU seconds)."""
    spec: dict[str, object] = {
        "address": target.address,
        "method": target.method,
        "concurrency": concurrency,
        "seconds": seconds,
    }
    if target.tls:
        f = pki.acquirer_files("1001")
        spec["tls"] = {"cert": str(f.cert), "key": str(f.key), "ca": str(f.ca)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chaos.bench_tls", "--worker", json.dumps(spec),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(workers)
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdout is not None
        if (await proc.stdout.readline()).strip() != b"ready":
            raise RuntimeError(f"load worker for {target.name} did not start")
    start_at = time.time() + 0.2
    cpu0 = cpu_seconds(target.process.pid)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start_at}\n".encode())
        await proc.stdin.drain()
    outs = [json.loads((await proc.communicate())[0]) for proc in procs]
    cpu = cpu_seconds(target.process.pid) - cpu0
    return sum(o["ok"] for o in outs), sum(o["failed"] for o in outs), seconds, cpu


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


async def run(rounds: int, seconds: float, workers: int, concurrency: int) -> dict[str, Samples]:
    samples = {name: Samples() for name in TARGETS}
    with tempfile.TemporaryDirectory(prefix="authgw-bench-tls-") as tmp:
        rig = Rig(Path(tmp)).start()
        try:
            for r in range(rounds):
                for name in TARGETS:
                    ok, failed, wall, cpu = await _load(
                        rig.targets[name], rig.pki, workers, concurrency, seconds
                    )
                    s = samples[name]
                    s.rps.append(ok / wall)
                    s.cpu_us.append(cpu / max(ok, 1) * 1e6)
                    s.failed += failed
                    cpu_us = cpu / max(ok, 1) * 1e6
                    line = f"{ok / wall:8,.0f} answers/s {cpu_us:6,.0f} us CPU/answer  failed {failed}"
                    print(f"round {r + 1}/{rounds} {name:13} {line}", flush=True)
        finally:
            rig.stop()
    return samples


def report(samples: dict[str, Samples], rounds: int) -> None:
    print(
        f"\nmedian (min-max) over {rounds} interleaved rounds; CPU of the gateway (direct: the issuer host)"
    )
    print(f"{'target':14} {'answers/s':>24} {'us CPU per answer':>24} {'failed':>7}")
    for name in TARGETS:
        s = samples[name]
        print(f"{name:14} {_spread(s.rps):>24} {_spread(s.cpu_us):>24} {s.failed:>7}")
    med = {name: (statistics.median(s.rps), statistics.median(s.cpu_us)) for name, s in samples.items()}
    for kind in ("authgw", "direct"):
        plain, tls = med[f"{kind}-plain"], med[f"{kind}-tls"]
        print(
            f"TLS cost, {kind}: {100 * (tls[0] / plain[0] - 1):+.1f} % answers/s, "
            f"{tls[1] - plain[1]:+.0f} us CPU per answer"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.bench_tls", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="per target per round")
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight per load process")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import uvloop  # noqa: PLC0415  # the load workers only

        print(json.dumps(uvloop.run(_closed_loop(json.loads(args.worker)))))
        return 0
    samples = asyncio.run(run(args.rounds, args.seconds, args.workers, args.concurrency))
    report(samples, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
