"""nginx and HAProxy as gRPC proxies with a backup server, for the benchmark's comparison.

Both get the same job as the gateway and a fair tuning for it: one primary
issuer host and one `backup` host, HTTP/2 (h2c) on both sides, the request
path forwarded unchanged, a per-attempt timeout equal to the gateway's
(400 ms), one retry, passive failure detection, and one worker (thread) each,
as the gateway is one process. What they cannot do is answer by themselves
when both hosts are gone: that is the gap stand-in fills.

Configs are written to a private directory; each proxy runs in the foreground
(nginx `daemon off;`, HAProxy `-db`) as a `ManagedProcess`, stopped by PID.

- nginx: `grpc_pass` to an upstream (primary and backup, each
  `max_fails=3 fail_timeout=5s`), `grpc_next_upstream error timeout
  non_idempotent` (gRPC calls are POSTs, never retried by default),
  keep-alive upstream connections. nginx streams gRPC request bodies, so a
  request whose body already went to a host that then times out is not
  retried: it fails (504).
- HAProxy: `mode http`, `proto h2` on the bind and both servers, `retry-on`
  timeouts, passive `observe layer7` plus an active HTTP/2 check. HAProxy
  2.6 cannot put the binary body of a grpc.health.v1 Check in a health
  check, so the check POSTs to a method no host serves: a live gRPC server
  answers it at once (HTTP 200, grpc-status 12), a hung process does not.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from chaos.processes import ManagedProcess, ProcessError

__all__ = ["ProxyTuning", "haproxy_config", "nginx_config", "start_haproxy", "start_nginx"]


@dataclass(frozen=True, slots=True)
class ProxyTuning:
    """What both proxies share, matched to the gateway's routing settings."""

    attempt_timeout_ms: int = 400  # connect / read timeout of one attempt (gateway: attempt_timeout_ms)
    retry_window_ms: int = 1500  # all tries of one request end within this (gateway: deadline - reserve)
    max_fails: int = 3  # failures that take the primary out (gateway: outlier.consecutive_failures)
    fail_timeout_s: int = 5  # ... for this long (gateway: outlier.base_ejection_ms)
    check_interval_ms: int = 500  # HAProxy active check period (nginx OSS has no active checks)
    max_streams: int = 256  # HTTP/2 streams per client connection


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ProcessError(f"{binary} not found on PATH: run scripts/ensure-system-deps.sh nginx haproxy")
    return path


def nginx_config(workdir: Path, port: int, primary: str, backup: str, tuning: ProxyTuning) -> str:
    """nginx.conf: h2c listener, grpc_pass to primary with a backup, private pid/log/temp paths."""
    t, d = tuning, workdir
    return f"""\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream issuer {{
        server {primary} max_fails={t.max_fails} fail_timeout={t.fail_timeout_s}s;
        server {backup} backup max_fails={t.max_fails} fail_timeout={t.fail_timeout_s}s;
        keepalive 32;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        keepalive_requests 1000000;
        http2_max_concurrent_streams {t.max_streams};
        location / {{
            grpc_pass grpc://issuer;
            grpc_connect_timeout {t.attempt_timeout_ms}ms;
            grpc_send_timeout {t.attempt_timeout_ms}ms;
            grpc_read_timeout {t.attempt_timeout_ms}ms;
            grpc_next_upstream error timeout non_idempotent;
            grpc_next_upstream_tries 2;
            grpc_next_upstream_timeout {t.retry_window_ms}ms;
        }}
    }}
}}
"""


def haproxy_config(port: int, primary: str, backup: str, tuning: ProxyTuning) -> str:
    """haproxy.cfg: h2 frontend, h2 servers (primary, backup), retries and health checks."""
    t = tuning
    check = f"check check-proto h2 inter {t.check_interval_ms}ms fall 2 rise 2"
    return f"""\
global
    nbthread 1
    maxconn 4000

defaults
    mode http
    timeout connect {t.attempt_timeout_ms}ms
    timeout server {t.attempt_timeout_ms}ms
    timeout check {t.attempt_timeout_ms}ms
    timeout client 60s
    retries 1
    option redispatch
    retry-on conn-failure empty-response response-timeout

frontend grpc_in
    bind 127.0.0.1:{port} proto h2
    default_backend issuer

backend issuer
    option httpchk
    http-check send meth POST uri /authgw.bench.Liveness/Check ver HTTP/2 \
hdr host issuer hdr content-type application/grpc hdr te trailers
    http-check expect status 200
    server primary {primary} proto h2 {check} \
observe layer7 error-limit {t.max_fails} on-error mark-down
    server backup {backup} proto h2 {check} backup
"""


def start_nginx(
    workdir: Path, port: int, primary: str, backup: str, tuning: ProxyTuning | None = None
) -> ManagedProcess:
    """Write the config under workdir and run nginx in the foreground."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(workdir, port, primary, backup, tuning or ProxyTuning()))
    argv = [_require("nginx"), "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "nginx-error.log")]
    argv += ["-g", "daemon off;"]
    return ManagedProcess("nginx", argv, port, workdir).start()


def start_haproxy(
    workdir: Path, port: int, primary: str, backup: str, tuning: ProxyTuning | None = None
) -> ManagedProcess:
    """Write the config under workdir and run HAProxy in the foreground."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "haproxy.cfg"
    conf.write_text(haproxy_config(port, primary, backup, tuning or ProxyTuning()))
    return ManagedProcess("haproxy", [_require("haproxy"), "-db", "-f", str(conf)], port, workdir).start()
