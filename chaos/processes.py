"""Start and stop real servers (etcd, redis, our own processes) on loopback by PID.

Used by the chaos topology and by the integration tests: every server gets a
free port on 127.0.0.1 and a private data directory, and is stopped by the PID
we started, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from authgw.security import TlsFiles

__all__ = [
    "ManagedProcess",
    "ProcessError",
    "free_port",
    "run_authgw",
    "start_authgw",
    "start_etcd",
    "start_etcd_cluster",
    "start_redis",
    "wait_for_port",
]


HARNESS_COMMANDS = frozenset({"issuer-sim", "bench-floor"})
_CHECKOUT = str(Path(__file__).resolve().parents[1])


class ProcessError(RuntimeError):
    """A managed server failed to start or exited early."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # blocking wait is fine: this runs in test/harness set-up, never on a loop
    raise ProcessError(f"nothing listened on 127.0.0.1:{port} within {timeout_s}s")


@dataclass
class ManagedProcess:
    """A child process we started, with what is needed to restart and stop it."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError(f"{self.name} is not running")
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait_port: bool = True, timeout_s: float = 15.0) -> ManagedProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        log = self.log_path.open("ab")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
            start_new_session=True,  # our signals go to it alone, not to the test runner
        )
        log.close()
        self.stopped = False
        if wait_port:
            try:
                wait_for_port(self.port, timeout_s, self.proc)
            except ProcessError as exc:
                raise ProcessError(f"{self.name}: {exc}\n{self.tail_log()}") from exc
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after timeout_s; safe to call twice."""
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        if self.alive():
            self.signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail_log(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ProcessError(f"{binary} not found on PATH: run scripts/ensure-system-deps.sh")
    return path


def start_redis(
    workdir: Path,
    port: int | None = None,
    appendonly: bool = True,
    cluster: bool = False,
    extra_args: tuple[str, ...] = (),
    *,
    tls: TlsFiles | None = None,
    aclfile: Path | None = None,
) -> ManagedProcess:
    """Start a private redis-server on loopback (AOF with fsync always when appendonly).

    With `cluster`, the server runs in Redis Cluster mode, owning no slot yet (CLUSTER ADDSLOTSRANGE).
    `extra_args` go to redis-server as they are (e.g. "--enable-debug-command", "local" for DEBUG SLEEP).
    With `tls` (Redis's server certificate, key, and the CA of its clients), `port` is a TLS port
    only (no plaintext port) and clients must present a certificate of that CA; replication and
    the cluster bus use TLS too. `aclfile`: the users (`authgw standin acl`), read at start.
    """
    port = port or free_port()
    cluster_args: list[str] = []
    if cluster:  # the bus gets a free port of its own (by default port + 10000, refused above 55535)
        cluster_args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-port", str(free_port()),
        ]  # fmt: skip
    listen = ["--port", str(port)]
    if tls is not None:
        listen = [
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(tls.cert),
            "--tls-key-file", str(tls.key),
            "--tls-ca-cert-file", str(tls.ca),
            "--tls-auth-clients", "yes",
            "--tls-replication", "yes",
            *(["--tls-cluster", "yes"] if cluster else []),
        ]  # fmt: skip
    if aclfile is not None:
        listen += ["--aclfile", str(aclfile)]
    argv = [
        _require("redis-server"),
        "--bind", "127.0.0.1",
        *listen,
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "always",
        "--daemonize", "no",
        *cluster_args,
        *extra_args,
    ]  # fmt: skip
    return ManagedProcess(f"redis-{port}", argv, port, workdir).start()


def start_etcd(
    workdir: Path,
    name: str = "etcd",
    client_port: int | None = None,
    *,
    tls: TlsFiles | None = None,
    client_cert_auth: bool = False,
) -> ManagedProcess:
    """Start a single-node etcd on loopback.

    With `tls` (etcd's server certificate and key, and the CA its clients' certificates must
    chain to) it serves https only; `client_cert_auth` then also requires a client certificate,
    whose CN etcd takes as the user once `auth enable` is on.
    """
    client_port = client_port or free_port()
    peer_port = free_port()
    cluster = f"{name}=http://127.0.0.1:{peer_port}"
    return start_etcd_member(
        workdir,
        name,
        client_port=client_port,
        peer_port=peer_port,
        initial_cluster=cluster,
        wait_port=True,
        tls=tls,
        client_cert_auth=client_cert_auth,
    )


def _etcd_client_tls_args(tls: TlsFiles | None, client_cert_auth: bool) -> tuple[str, list[str]]:
    """The client URLs' scheme and etcd 3.4's flags for serving them over TLS."""
    if tls is None:
        if client_cert_auth:
            raise ProcessError("etcd: client_cert_auth needs tls (certificates are checked in the handshake)")
        return "http", []
    args = ["--cert-file", str(tls.cert), "--key-file", str(tls.key), "--trusted-ca-file", str(tls.ca)]
    return "https", [*args, "--client-cert-auth"] if client_cert_auth else args


def start_etcd_member(
    workdir: Path,
    name: str,
    *,
    client_port: int,
    peer_port: int,
    initial_cluster: str,
    wait_port: bool,
    tls: TlsFiles | None = None,
    client_cert_auth: bool = False,
) -> ManagedProcess:
    scheme, tls_args = _etcd_client_tls_args(tls, client_cert_auth)
    argv = [
        _require("etcd"),
        "--name", name,
        "--data-dir", str(workdir / f"{name}.data"),
        "--listen-client-urls", f"{scheme}://127.0.0.1:{client_port}",
        "--advertise-client-urls", f"{scheme}://127.0.0.1:{client_port}",
        *tls_args,
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", initial_cluster,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", f"authgw-{workdir.name}",
        "--heartbeat-interval", "50",
        "--election-timeout", "500",
        "--log-level", "warn",
    ]  # fmt: skip
    return ManagedProcess(name, argv, client_port, workdir).start(wait_port=wait_port)


def start_etcd_cluster(
    workdir: Path, size: int = 3, *, tls: TlsFiles | None = None, client_cert_auth: bool = False
) -> list[ManagedProcess]:
    """Start an etcd cluster of `size` members on loopback; returns them in order (TLS as start_etcd)."""
    names = [f"etcd{i}" for i in range(size)]
    client_ports = [free_port() for _ in names]
    peer_ports = [free_port() for _ in names]
    cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer_ports, strict=True))
    members = [
        start_etcd_member(
            workdir,
            n,
            client_port=c,
            peer_port=p,
            initial_cluster=cluster,
            wait_port=False,
            tls=tls,
            client_cert_auth=client_cert_auth,
        )
        for n, c, p in zip(names, client_ports, peer_ports, strict=True)
    ]
    for m in members:
        wait_for_port(m.port, 15.0, m.proc)
    return members


def run_authgw(args: list[str], *, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one `authgw <args>` command to completion (this checkout's code), capturing its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": _CHECKOUT}
    argv = [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False, env=env)


def start_authgw(
    workdir: Path,
    name: str,
    args: list[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    wait_port: bool = True,
) -> ManagedProcess:
    """Start `authgw <args>` (our console entry point) as a child process.

    Harness commands (`issuer-sim`) run as `python -m chaos <args>`: the product does not ship them.
    The child imports this checkout's code (PYTHONPATH), whatever the venv's editable install says.
    """
    module = "chaos" if args and args[0] in HARNESS_COMMANDS else "gateway.cli"
    argv = [sys.executable, "-m", module, *args]
    merged = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": _CHECKOUT}
    if env:
        merged.update(env)
    return ManagedProcess(name, argv, port, workdir, env=merged).start(wait_port=wait_port)
