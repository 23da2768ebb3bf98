"""ISO 8583 pool members in the router, against real simulator processes: echo, ejection, reconnection.

The router is in-process (its members' state is what these tests look at); the issuer hosts are
simulator processes serving ISO 8583 in plaintext, on loopback.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_eventually

from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_authgw, wait_for_port
from gateway.config import parse_config
from gateway.outlier import EjectionState
from gateway.router import Router
from tests.gateway_fixtures import auth_request

pytestmark = pytest.mark.timeout(60)

ISO_POOL = {"connections": 2, "echo_interval": "200ms", "echo_timeout": "200ms", "reconnect_backoff": "50ms"}


def start_iso_sim(
    workdir: Path, member: str, ports: tuple[int, int] | None = None
) -> tuple[ManagedProcess, int]:
    port, iso_port = ports or (free_port(), free_port())
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", member]
    proc = start_authgw(workdir, f"sim-{member}", [*args, "--iso8583-listen", f"127.0.0.1:{iso_port}"], port)
    wait_for_port(iso_port)
    return proc, iso_port


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[ManagedProcess, int]]:
    proc, iso_port = start_iso_sim(tmp_path, "a1")
    try:
        yield proc, iso_port
    finally:
        proc.stop()


def config(iso_port: int) -> Any:
    data: dict[str, Any] = {
        "gateway": {"listen": f"127.0.0.1:{free_port()}", "instance": "gw-test"},
        "outlier": {"max_ejection_share": 1.0},  # a lone member may be ejected
        "pools": [
            {
                "name": "primary",
                "members": [{"name": "a1", "address": f"127.0.0.1:{iso_port}", "protocol": "iso8583"}],
                "iso8583": ISO_POOL,
            }
        ],
        **{section: dict(values) for section, values in PLAINTEXT.items()},
    }
    return parse_config(data, "<test>")


@pytest.fixture
async def router(sim: tuple[ManagedProcess, int]) -> AsyncIterator[Router]:
    router = Router(config(sim[1]))
    member = router.pools[0].members["a1"]
    assert member.link is not None

    async def connected() -> None:
        assert member.link is not None and member.link.open_connections == 2

    await assert_eventually(connected)
    try:
        yield router
    finally:
        await router.close()


async def test_member_that_stops_answering_echoes_is_ejected(
    sim: tuple[ManagedProcess, int], router: Router
) -> None:
    """A host that keeps its connections but answers nothing (SIGSTOP), with no traffic: ejected by echo."""
    member = router.pools[0].members["a1"]
    sim[0].signal(signal.SIGSTOP)
    try:

        async def ejected() -> None:
            assert member.ejection.state(time.monotonic()) is EjectionState.EJECTED
            assert router.ejections["primary"] == 1

        await assert_eventually(ejected)
    finally:
        sim[0].signal(signal.SIGCONT)


async def test_member_answers_again_after_its_host_restarts(
    sim: tuple[ManagedProcess, int], router: Router, tmp_path: Path
) -> None:
    """Host killed and restarted on its port: the link reconnects (backoff) and the member answers."""
    member = router.pools[0].members["a1"]
    assert member.link is not None
    sim[0].kill()

    async def disconnected() -> None:
        assert member.link is not None and member.link.open_connections == 0

    await assert_eventually(disconnected)
    restarted, _ = start_iso_sim(tmp_path / "again", "a1", (sim[0].port, sim[1]))
    try:

        async def answered() -> None:
            result = await router.route(
                auth_request(request_id=f"after-restart-{time.time_ns()}"), time.monotonic() + 2
            )
            assert result.response is not None and result.response.response_code == "00"

        await assert_eventually(answered)
    finally:
        restarted.stop()
