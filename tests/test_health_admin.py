"""The operator commands `authgw pools | drain | undrain | mode` against a real etcd."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import pytest
from test_health_support import unique_root

from chaos.processes import ManagedProcess, free_port
from health import admin
from health.etcd import Endpoint, EtcdClient
from health.keys import KeyLayout
from health.membership import GatewayInfo, MemberInfo


@pytest.fixture
async def client(etcd_server: ManagedProcess) -> AsyncIterator[EtcdClient]:
    async with EtcdClient([Endpoint("127.0.0.1", etcd_server.port)]) as c:
        yield c


async def run(etcd: ManagedProcess | int, *argv: str) -> int:
    """Run one admin command in a thread (it runs its own event loop), as `authgw` would."""
    port = etcd if isinstance(etcd, int) else etcd.port
    return await asyncio.to_thread(
        admin.main, [*argv, "--etcd", f"http://127.0.0.1:{port}", "--etcd-insecure"]
    )


async def test_drain_and_undrain_set_and_clear_the_pool_flag(
    etcd_server: ManagedProcess, client: EtcdClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """drain writes the pool's drain key, undrain deletes it."""
    layout = KeyLayout(unique_root())
    assert await run(etcd_server, "drain", "primary", "--key-root", layout.root) == 0
    assert await client.get(layout.drain("primary")) is not None
    assert await run(etcd_server, "undrain", "primary", "--key-root", layout.root) == 0
    assert await client.get(layout.drain("primary")) is None
    assert "primary undrained" in capsys.readouterr().out


async def test_mode_sets_the_mode_key(etcd_server: ManagedProcess, client: EtcdClient) -> None:
    """mode force-standin writes the value the gateways read."""
    layout = KeyLayout(unique_root())
    assert await run(etcd_server, "mode", "force-standin", "--key-root", layout.root) == 0
    kv = await client.get(layout.mode())
    assert kv is not None and kv.value == b"force-standin"


async def test_invalid_mode_is_refused_with_exit_2(
    etcd_server: ManagedProcess, client: EtcdClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown mode exits 2, names the bad value and the accepted ones, and writes nothing."""
    layout = KeyLayout(unique_root())
    assert await run(etcd_server, "mode", "standin-please", "--key-root", layout.root) == 2
    err = capsys.readouterr().err
    assert "'standin-please'" in err and "force-standin" in err
    assert await client.get(layout.mode()) is None


async def test_pools_lists_members_with_lease_ttl_mode_and_gateways(
    etcd_server: ManagedProcess, client: EtcdClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """pools --json shows each pool's members with their lease TTL left, drain flags, mode and gateways."""
    layout = KeyLayout(unique_root())
    lease = await client.grant_lease(30)
    member = MemberInfo(address="10.0.0.1:7000", zone="par1", weight=2)
    await client.put(layout.member("primary", "h1"), member.to_json(), lease=lease)
    await client.put(layout.drain("secondary"), b"{}")
    await client.put(layout.mode(), b"force-issuer")
    await client.put(layout.gateway("gw-1"), GatewayInfo(address="10.0.1.1:9000").to_json(), lease=lease)
    capsys.readouterr()

    assert await run(etcd_server, "pools", "--json", "--key-root", layout.root) == 0
    report = json.loads(capsys.readouterr().out)
    h1 = report["pools"]["primary"]["members"]["h1"]
    assert (h1["address"], h1["zone"], h1["weight"]) == ("10.0.0.1:7000", "par1", 2)
    assert 25 <= h1["lease_ttl_s"] <= 30
    assert report["pools"]["secondary"] == {"drained": True, "members": {}}
    assert report["mode"] == "force-issuer"
    assert report["gateways"]["gw-1"]["address"] == "10.0.1.1:9000"

    assert await run(etcd_server, "pools", "--key-root", layout.root) == 0
    text = capsys.readouterr().out
    assert "mode: force-issuer" in text and "pool secondary: DRAINED" in text and "10.0.0.1:7000" in text


async def test_unreachable_etcd_exits_1_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    """With etcd down, an admin command exits 1 and says etcd could not be reached."""
    assert await run(free_port(), "pools", "--etcd-timeout", "0.5") == 1
    assert "etcd error" in capsys.readouterr().err


async def test_authgw_cli_dispatches_to_the_admin_commands(etcd_server: ManagedProcess) -> None:
    """`authgw pools` run as a process reaches health.admin and reads etcd (AUTHGW_ETCD honoured)."""
    layout = KeyLayout(unique_root())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "drain",
        "primary",
        "--key-root",
        layout.root,
        "--etcd-insecure",
        env={**os.environ, "AUTHGW_ETCD": f"http://127.0.0.1:{etcd_server.port}"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"pool primary drained" in out
