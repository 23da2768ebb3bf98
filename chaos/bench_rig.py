"""The benchmark's processes: two issuer hosts and the four targets in front of them.

    primary sim ─┬─ direct            (IssuerHost/Authorize straight to the host: no hop at all)
    backup sim  ─┼─ floor             (chaos.bench_floor: bytes to primary, backup on error; Python's least)
                 ├─ authgw gateway    (pools primary + secondary; Authorization/Authorize)
                 ├─ nginx grpc_pass   (upstream primary + backup; IssuerHost/Authorize)
                 ├─ HAProxy h2        (server primary + backup; IssuerHost/Authorize)
                 └─ authgw-admission  (only with `admission`: as authgw, admission on, min_limit 32)

The `authgw` target runs with `[admission] enabled = false`: h2load counts HTTP
statuses only, and a refusal (RESOURCE_EXHAUSTED) is HTTP 200 with grpc-status
8, so under h2load's closed loop a refusing gateway would seem to answer
fast and cheaply. Admission control is measured by the overload run, which
reads every gRPC status (chaos.bench_overload).

Every process is started on a free loopback port and stopped by PID. The
issuer hosts run on uvloop with their in-memory ledger, so the hosts cost as
little as they can and a target's own cost shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

from authgw.v1 import authorization_pb2 as pb
from chaos.bench_cpu import cpu_seconds
from chaos.bench_h2load import bench_request
from chaos.bench_openloop import METHOD_GATEWAY, METHOD_ISSUER
from chaos.bench_proxies import start_haproxy, start_nginx
from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, ProcessError, free_port, start_authgw, wait_for_port
from chaos.sim_control import SimControl
from chaos.topology import to_toml

__all__ = ["ADMISSION", "TARGETS", "BenchRig", "Target"]

TARGETS = ("direct", "floor", "authgw", "nginx", "haproxy")
ADMISSION = "authgw-admission"  # not in TARGETS: measured in the overload run only
# The overload run's admission: a floor of 32 lets the limit act at one process's saturation; the
# default floor (500, room for outage traffic) leaves most of a 2x overload queued.
TIGHT_ADMISSION: dict[str, object] = {"enabled": True, "min_limit": 32, "initial_limit": 200}


@dataclass(frozen=True, slots=True)
class Target:
    """One way to reach the issuer hosts."""

    name: str
    address: str  # host:port
    method: str  # gRPC method path the target serves
    process: ManagedProcess | None  # whose CPU (with its children) is the target's cost; None: direct

    @property
    def url(self) -> str:
        return f"http://{self.address}{self.method}"

    def cpu_s(self) -> float:
        return 0.0 if self.process is None else cpu_seconds(self.process.pid)


class BenchRig:
    """Starts the issuer hosts and the targets; stops all of them, whatever happened."""

    def __init__(
        self,
        workdir: Path,
        *,
        attempt_timeout_ms: int = 400,
        deadline_ms: int = 2000,
        proxies: bool = True,
        gateway_workers: int = 1,
        admission: bool = False,
    ) -> None:
        self.workdir = workdir
        self.proxies = proxies
        self.gateway_workers = gateway_workers
        self.admission = admission
        self.attempt_timeout_ms = attempt_timeout_ms
        self.deadline_ms = deadline_ms
        self.primary: ManagedProcess | None = None
        self.backup: ManagedProcess | None = None
        self.targets: dict[str, Target] = {}
        self._procs: list[ManagedProcess] = []

    @property
    def sims(self) -> tuple[ManagedProcess, ManagedProcess]:
        assert self.primary is not None and self.backup is not None, "rig not started"
        return self.primary, self.backup

    def start(self) -> BenchRig:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        # Python processes take a second or two to import: start them together, then wait for each.
        self.primary = self._sim("primary", "p1")
        self.backup = self._sim("secondary", "s1")
        primary, backup = self.primary.address, self.backup.address
        self._wait(self.primary, self.backup)
        gateway, floor = self._gateway("gw-bench", {"enabled": False}), self._floor()
        self.targets["direct"] = Target("direct", primary, METHOD_ISSUER, None)
        self.targets["floor"] = Target("floor", floor.address, METHOD_GATEWAY, floor)
        self.targets["authgw"] = Target("authgw", gateway.address, METHOD_GATEWAY, gateway)
        if self.proxies:
            nginx = self._own(start_nginx(self.workdir / "nginx", free_port(), primary, backup))
            self.targets["nginx"] = Target("nginx", nginx.address, METHOD_ISSUER, nginx)
            haproxy = self._own(start_haproxy(self.workdir / "haproxy", free_port(), primary, backup))
            self.targets["haproxy"] = Target("haproxy", haproxy.address, METHOD_ISSUER, haproxy)
        self._wait(gateway, floor)
        if self.admission:
            limited = self.extra_gateway("gw-admission", TIGHT_ADMISSION)
            self.targets[ADMISSION] = Target(ADMISSION, limited.address, METHOD_GATEWAY, limited)

    def _own(self, proc: ManagedProcess) -> ManagedProcess:
        self._procs.append(proc)
        return proc

    @staticmethod
    def _wait(*procs: ManagedProcess) -> None:
        for proc in procs:
            try:
                wait_for_port(proc.port, 20.0, proc.proc)
            except ProcessError as exc:
                raise ProcessError(f"{proc.name}: {exc}\n{proc.tail_log()}") from exc

    def _sim(self, pool: str, member: str) -> ManagedProcess:
        port = free_port()
        args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", pool, "--member", member, "--uvloop"]
        return self._own(start_authgw(self.workdir, f"sim-{member}", args, port, wait_port=False))

    def extra_gateway(
        self, name: str, admission: dict[str, object] | None = None, *, workers: int | None = None
    ) -> ManagedProcess:
        """One more gateway in front of the same hosts, with these [admission] keys and `workers`
        processes (default: the rig's); stopped with the rig."""
        proc = self._gateway(name, admission, workers)
        self._wait(proc)
        return proc

    def _gateway(
        self, name: str, admission: dict[str, object] | None = None, workers: int | None = None
    ) -> ManagedProcess:
        primary, backup = self.sims
        port = free_port()
        doc = {
            "gateway": {"listen": f"127.0.0.1:{port}", "instance": name, "drain_timeout": "2s"},
            **({"admission": admission} if admission else {}),
            **PLAINTEXT,
            "routing": {
                "attempt_timeout": f"{self.attempt_timeout_ms}ms",
                "deadline": f"{self.deadline_ms}ms",
            },
            "pools": [
                {"name": "primary", "priority": 1, "members": [{"name": "p1", "address": primary.address}]},
                {"name": "secondary", "priority": 2, "members": [{"name": "s1", "address": backup.address}]},
            ],
        }
        path = self.workdir / f"{name}.toml"
        path.write_text(to_toml(doc))
        args = ["serve", "--config", str(path), "--workers", str(workers or self.gateway_workers)]
        return self._own(start_authgw(self.workdir, name, args, port, wait_port=False))

    def _floor(self) -> ManagedProcess:
        primary, backup = self.sims
        port = free_port()
        args = ["bench-floor", "--listen", f"127.0.0.1:{port}", "--primary", primary.address]
        args += ["--backup", backup.address, "--attempt-timeout-ms", str(self.attempt_timeout_ms)]
        return self._own(start_authgw(self.workdir, "floor", args, port, wait_port=False))

    def processes(self) -> Iterator[ManagedProcess]:
        yield from reversed(self._procs)  # proxies and gateway before the hosts they call

    def stop(self) -> None:
        """Stop every process started, in reverse order; safe to call twice."""
        for proc in self.processes():
            with contextlib.suppress(Exception):
                proc.stop()

    def hang(self, *procs: ManagedProcess) -> None:
        """SIGSTOP: the kernel still accepts connections and data, the process answers nothing."""
        for proc in procs:
            proc.signal(signal.SIGSTOP)

    def resume_all(self) -> None:
        for proc in self.sims:
            proc.signal(signal.SIGCONT)

    async def backend_calls(self) -> int:
        """Authorize calls received so far by both issuer hosts."""
        total = 0
        for proc in self.sims:
            async with SimControl(proc.address) as sim:
                total += (await sim.report()).authorize_calls
        return total

    async def wait_ready(self, target: Target, timeout_s: float = 20.0) -> pb.AuthorizeResponse:
        """Call `target` until an issuer answers through it (after a fault, proxies and gateway recover)."""
        deadline = time.monotonic() + timeout_s
        last = "no attempt"
        async with grpc.aio.insecure_channel(target.address) as channel:
            call = channel.unary_unary(
                target.method,
                request_serializer=pb.AuthorizeRequest.SerializeToString,
                response_deserializer=pb.AuthorizeResponse.FromString,
            )
            n = 0
            while time.monotonic() < deadline:
                n += 1
                try:
                    resp: pb.AuthorizeResponse = await call(
                        bench_request(f"ready-{target.name}-{time.time_ns()}-{n}"), timeout=1.0
                    )
                except grpc.aio.AioRpcError as exc:
                    last = f"{exc.code().name}: {exc.details()}"
                else:
                    if resp.source == pb.ISSUER:
                        return resp
                    last = f"answered by {pb.Source.Name(resp.source)} ({resp.response_code})"
                await asyncio.sleep(0.25)
        raise TimeoutError(f"{target.name} at {target.address} not ready within {timeout_s}s: {last}")
