"""The product installs alone: `pip install .` in a fresh venv gives a working `authgw serve`, no harness.

Run by `make package-check` (part of `make test`). Builds a throw-away venv, installs the
checkout without extras, and checks:
  - `authgw serve --help` works and `authgw serve` answers grpc.health.v1 Check with SERVING;
  - the harness is not installed: `import chaos` fails, and so do its dependencies
    (`import matplotlib`, `import hdrh`).
Exit status 0 when every check holds; each failure is printed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_HEALTH = """
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as ch:
    resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
print(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
"""

_CONFIG = """
[gateway]
listen = "127.0.0.1:{port}"
instance = "package-check"

[tls]
insecure = true     # the check starts a gateway from the wheel alone: no certificates at hand
[issuer_tls]
insecure = true

[[pools]]
name = "primary"
priority = 1
members = [{{ name = "a1", address = "127.0.0.1:9" }}]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, **kwargs)  # type: ignore[call-overload, no-any-return]


def _serve_answers(venv: Path, workdir: Path) -> str | None:
    """Start `authgw serve`, ask its health service, stop it; None when it answered SERVING."""
    port = _free_port()
    config = workdir / "gateway.toml"
    config.write_text(_CONFIG.format(port=port))
    proc = subprocess.Popen(
        [str(venv / "bin" / "authgw"), "serve", "--config", str(config), "--log-format", "text"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            health = _run([str(venv / "bin" / "python"), "-c", _HEALTH, f"127.0.0.1:{port}"], cwd=workdir)
            if health.stdout.strip() == "SERVING":
                return None
            time.sleep(0.3)
        return "authgw serve did not answer SERVING within 20 s"
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        if proc.returncode not in (0, -15):
            print(output, file=sys.stderr)


def main() -> int:
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="authgw-package-") as tmp:
        venv = Path(tmp) / "venv"
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", str(ROOT)],
        ]
        for step in steps:
            done = _run(step, cwd=tmp)
            if done.returncode != 0:
                print(done.stdout, done.stderr, file=sys.stderr)
                print(f"package-check: {' '.join(step[:3])} failed", file=sys.stderr)
                return 1
        if _run([str(venv / "bin" / "authgw"), "serve", "--help"], cwd=tmp).returncode != 0:
            problems.append("authgw serve --help failed")
        for module in ("chaos", "matplotlib", "hdrh"):
            if _run([str(venv / "bin" / "python"), "-c", f"import {module}"], cwd=tmp).returncode == 0:
                problems.append(f"`import {module}` works in the product's venv: the harness leaked into it")
        problem = _serve_answers(venv, Path(tmp))
        if problem:
            problems.append(problem)
    for problem in problems:
        print(f"package-check: {problem}", file=sys.stderr)
    if not problems:
        print("package-check: pip install . gives a working authgw serve, without the harness")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
