"""`authgw standin status` and `authgw standin reconcile` after settlement (real Redis, simulators, CLI)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_eventually
from test_settlement_support import (
    assert_applied_exactly_once,
    journal_decisions,
    new_pans,
    standin_file,
    start_sims,
    worker,
)
from test_standin_support import ENV

from chaos.processes import ManagedProcess
from chaos.sim_control import SimControl

LEDGER_DB = 6


@pytest.fixture(scope="module")
def sims(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess
) -> Iterator[dict[str, ManagedProcess]]:
    """Two issuer hosts sharing one ledger."""
    procs = start_sims(
        tmp_path_factory.mktemp("cli-sims"), f"redis://127.0.0.1:{redis_server.port}/{LEDGER_DB}"
    )
    yield procs
    for p in procs.values():
        p.stop()


@pytest.fixture
async def redis_port(redis_port: int, sims: dict[str, ManagedProcess]) -> AsyncIterator[int]:
    """The session Redis without stand-in keys (conftest's fixture); simulators without faults afterwards."""
    yield redis_port
    for p in sims.values():
        p.signal(signal.SIGCONT)
        async with SimControl(p.address) as ctl:
            await ctl.clear_faults()


async def standin_cli(*args: str) -> dict[str, Any]:
    """Run `authgw standin <args>` and return its JSON output (exit 0 required)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "standin", *args, env={**os.environ, **ENV},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_status_shows_settled_counts_and_amounts_per_gateway(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Status lists, per deciding gateway, approvals and declines settled with their amounts."""
    a = await journal_decisions(redis_port, tmp_path / "a.db", new_pans(8), instance="gw-a", declines_every=4)
    b = await journal_decisions(redis_port, tmp_path / "b.db", new_pans(3), instance="gw-b", declines_every=0)
    async with worker(redis_port, sims, instance="gw-s"):
        await assert_eventually(lambda: assert_applied_exactly_once(sims["a1"], a + b), timeout_s=10)

        async def after_the_last_batch() -> dict[str, Any]:
            status = await standin_cli("status", "--config", str(standin_file(tmp_path, redis_port)))
            assert [w["state"] for w in status["settlement"]["gateways"]["gw-s"]["workers"]] == ["idle"]
            return status

        status = await assert_eventually(after_the_last_batch, timeout_s=10)
    settlement = status["settlement"]
    assert (settlement["unsettled"], settlement["dead_letters"]) == (0, 0)
    gateways = settlement["gateways"]
    approved_a = [d for d in a if d.approved]
    assert gateways["gw-a"]["settled_as_decider"]["approved"]["count"] == len(approved_a)
    assert gateways["gw-a"]["settled_as_decider"]["declined"]["count"] == len(a) - len(approved_a)
    assert gateways["gw-b"]["settled_as_decider"]["approved"]["count"] == 3
    assert gateways["gw-s"]["settled_as_settler"]["approved"]["count"] == len(approved_a) + 3
    amounts = gateways["gw-s"]["settled_as_settler"]["approved"]["amount_minor"]
    assert amounts["EUR"] > 0
    [w] = gateways["gw-s"]["workers"]
    assert (w["state"], w["standin_mode"], w["stale"]) == ("idle", "off", False)


async def test_reconcile_lists_exactly_the_unacknowledged_decisions(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Reconcile totals journaled and acknowledged decisions and lists the difference by decision id."""
    settled = await journal_decisions(redis_port, tmp_path / "l.db", new_pans(5))
    async with worker(redis_port, sims):
        view = await assert_eventually(lambda: assert_applied_exactly_once(sims["a1"], settled), timeout_s=10)
    unsettled = await journal_decisions(redis_port, tmp_path / "l.db", new_pans(4))
    report = await standin_cli("reconcile", "--config", str(standin_file(tmp_path, redis_port)))
    assert not report["balanced"]
    assert report["journaled"]["count"] == len(settled) + len(unsettled)
    assert report["acknowledged"]["count"] == len(settled)
    posted = sum(r.amount_minor for r in view.records.values() if r.applied)  # the issuer's own figure
    assert report["acknowledged"]["approved"]["amount_minor"] == {"EUR": posted}
    assert sorted(d["decision_id"] for d in report["differences"]) == sorted(d.decision_id for d in unsettled)
    assert {d["where"] for d in report["differences"]} == {"journal"}
