"""deploy/haproxy/haproxy.cfg, the L4 alternative to client-side round_robin, is a valid HAProxy config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chaos.pki import DevPki

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy" / "haproxy.cfg"
FILES = "/etc/haproxy/authgw/"


def test_haproxy_accepts_the_fleet_config(tmp_path: Path) -> None:
    """`haproxy -c` with the dev PKI's files in place of /etc/haproxy/authgw (it loads them)."""
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if haproxy is None:
        pytest.skip("haproxy not installed: scripts/ensure-system-deps.sh haproxy")
    client = DevPki(tmp_path / "pki").files("operator")
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(client.ca, etc / "ca.crt")
    (etc / "health-client.pem").write_text(client.cert.read_text() + client.key.read_text())
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(CONFIG.read_text().replace(FILES, f"{etc}/"))
    done = subprocess.run(
        [haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.cfg"  # the check can fail: a missing client certificate is refused
    broken.write_text(cfg.read_text().replace("health-client.pem", "missing.pem"))
    done = subprocess.run(
        [haproxy, "-c", "-f", str(broken)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode != 0
