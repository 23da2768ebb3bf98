"""Short versions of the chaos experiments whose fault touches money, inside the test suite.

Each runs the same experiment as its `make chaos-<name>` target, compressed (SCALE) at half
the rate, and asserts what the money invariant needs: each of the oracle's six figures is 0
against the issuer's books, request by request; no request fails outside the first second
after each fault; and every criterion showing the fault was really provoked holds (stalls,
late approvals, cancels, reversals of stand-in approvals...). Latency bounds are left to
`make chaos`: on a shared 2-core machine they measure the neighbours.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from chaos.experiment import Experiment, run_experiment
from chaos.experiments import build
from chaos.experiments_money import AVAILABILITY_OUTSIDE
from chaos.verify import FIGURES

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

SCALE = 0.5  # about 13 s of load each
RATE_PER_S = 150.0
# Counts the fault seconds too: `make chaos` judges it; here only the second after each fault is exempt.
WHOLE_RUN = "availability"
REUSED_REFUSED = "reused request_ids refused ALREADY_EXISTS"


async def _run(name: str, tmp_path: Path) -> dict[str, Any]:
    return await _start(dataclasses.replace(build(name, SCALE), rate_per_s=RATE_PER_S), tmp_path)


async def _start(exp: Experiment, tmp_path: Path) -> dict[str, Any]:
    with (tmp_path / "console.txt").open("w") as out:
        console = Console(file=out, width=130)
        return await run_experiment(exp, tmp_path / "topology", console, tmp_path / "reports")


def _failed(report: dict[str, Any], *known: str) -> list[dict[str, Any]]:
    """Failed criteria, latency bounds, the whole run's availability and `known` ones aside."""
    aside = {WHOLE_RUN, *known}
    return [c for c in report["criteria"] if not (c["passed"] or c["timing"] or c["name"] in aside)]


def _assert_money_safe(report: dict[str, Any], *known: str) -> None:
    settlement = report["settlement"]
    assert {name: settlement[name] for name in FIGURES} == dict.fromkeys(FIGURES, 0), settlement["examples"]
    assert _failed(report, *known) == []
    judged = [c for c in report["criteria"] if c["name"].startswith(AVAILABILITY_OUTSIDE) and not c["timing"]]
    assert judged, "no failure counted outside the first second after each fault"


async def test_chaos_redis_lost_replies(tmp_path: Path) -> None:
    """Redis stalls past the command deadline in stand-in: every book ends where its acquirer holds it."""
    report = await _run("redis-lost-replies", tmp_path)
    _assert_money_safe(report)
    assert report["settlement"]["journaled"] > 0


async def test_chaos_short_deadlines(tmp_path: Path) -> None:
    """50-300 ms deadlines: the issuer answers while pools are healthy, nothing is lost when they fail."""
    _assert_money_safe(await _run("short-deadlines", tmp_path))


@pytest.fixture(scope="module")
async def replays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short chaos-replays run, judged by the two tests below."""
    return await _run("replays", tmp_path_factory.mktemp("replays"))


async def test_chaos_replays(replays: dict[str, Any]) -> None:
    """Repeats and reused request_ids across two gateways in an outage: each book ends at A, posted once."""
    _assert_money_safe(replays, REUSED_REFUSED)


@pytest.mark.xfail(
    strict=True,
    reason="a reused request_id is refused only where a record is: not when its original was answered "
    "by the issuer and the reuse comes in stand-in (no record of issuer answers is kept), not when the "
    "original was decided on another gateway's local journal (Redis away) and not yet moved",
)
async def test_chaos_replays_refuses_every_reused_request_id(replays: dict[str, Any]) -> None:
    """Every request_id reused with other content is refused ALREADY_EXISTS (the contract)."""
    [criterion] = [c for c in replays["criteria"] if c["name"] == REUSED_REFUSED]
    assert criterion["passed"], criterion["observed"]


async def test_chaos_late_approvals(tmp_path: Path) -> None:
    """The issuer approves after the attempt timed out while stand-in answers: posted once, as answered."""
    _assert_money_safe(await _run("late-approvals", tmp_path))


async def test_chaos_client_cancels(tmp_path: Path) -> None:
    """Clients give up in failover and stand-in and reverse: no hold stays, no approval is lost."""
    report = await _run("client-cancels", tmp_path)
    _assert_money_safe(report)
    assert report["settlement"]["reversals_acked"] == report["settlement"]["reversals_sent"] > 0


async def test_chaos_reversals(tmp_path: Path) -> None:
    """Stand-in approvals reversed (full, partial, first, elsewhere): the books equal A to the cent."""
    report = await _run("reversals", tmp_path)
    _assert_money_safe(report)
    settlement = report["settlement"]
    assert settlement["reversals_acked"] == settlement["reversals_sent"] > 0


async def test_chaos_redis_down(tmp_path: Path) -> None:
    """Redis killed in stand-in (the local journal takes over): every money figure 0."""
    _assert_money_safe(await _run("redis-down", tmp_path))


async def test_chaos_gateway_crash(tmp_path: Path) -> None:
    """A gateway killed in stand-in and in settlement: every money figure 0."""
    _assert_money_safe(await _run("gateway-crash", tmp_path))


async def test_chaos_money_without_reused_ids(tmp_path: Path) -> None:
    """Every money fault but reused ids at once, across two gateways (issuers approving after the
    attempt timeout, then a total outage; repeats, reversals, cancels, 50 ms-2 s deadlines): each
    book ends at A, posted once. A repeat answered again from stand-in after the slow issuer approved
    it late was debited before its decision was advised again (3 declines debited in one run at
    150/s). Reused ids are left out: their open cases (README "Reused request ids") are the strict
    xfail above, and here they would mask what this test guards."""
    exp = build("money", SCALE)
    exp = dataclasses.replace(
        exp, rate_per_s=RATE_PER_S, behaviour=dataclasses.replace(exp.behaviour, reuse_share=0.0)
    )
    report = await _start(exp, tmp_path)
    settlement = report["settlement"]
    assert {name: settlement[name] for name in FIGURES} == dict.fromkeys(FIGURES, 0), settlement["examples"]
    assert settlement["journaled"] > 0 and settlement["reversals_acked"] == settlement["reversals_sent"] > 0
    assert _failed(report) == []
