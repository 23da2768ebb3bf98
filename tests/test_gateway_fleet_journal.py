"""A crashed gateway's local SQLite journal is settled: by the instance restarted, or, its host
lost, by `authgw standin replay --local-journal` on a copy, run from elsewhere (issue 18, point 3).

Two gateways take stand-in decisions while every issuer host is stopped and Redis is dead, so
each decision is journaled only in its gateway's SQLite file; both gateways are then SIGKILLed.
gw-1 is restarted (its own backlog), gw-2's host never returns: a copy of its file is replayed
twice, from two copies, by another process. The issuer's books, request by request: each
approval posted once, by one approval advice; each decline holds nothing.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from authgw.v1 import authorization_pb2 as pb
from chaos.gateway_stubs import GatewayStubs
from chaos.load import CardMix
from chaos.processes import run_authgw
from chaos.topology import Topology, TopologySpec
from chaos.verify import issuer_books
from tests.helpers import assert_eventually

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    spec = TopologySpec(gateways=2, redis=True, attempt_timeout_ms=300, deadline_ms=3000)
    t = Topology(tmp_path / "topo", spec).start()
    try:
        yield t
    finally:
        t.stop()


async def _decide_locally(
    topo: Topology, per_gateway: int
) -> dict[int, dict[str, tuple[pb.AuthorizeRequest, pb.AuthorizeResponse]]]:
    """Stand-in decisions journaled only locally: issuer hosts stopped, Redis killed."""
    for sim in topo.sims.values():
        sim.signal(signal.SIGSTOP)
    assert topo.redis is not None
    topo.redis.kill()
    mix = CardMix(cards=40, seed=3)
    stubs = GatewayStubs([g.address for g in topo.gateways], topo.acquirer_credentials)
    decided: dict[int, dict[str, tuple[pb.AuthorizeRequest, pb.AuthorizeResponse]]] = {0: {}, 1: {}}
    try:
        for i in range(2 * per_gateway):
            req = mix.request()
            resp = await stubs.of(req.acquirer_id)[i % 2].Authorize(req, timeout=5)
            assert resp.source == pb.STAND_IN, resp
            decided[i % 2][req.request_id] = (req, resp)
    finally:
        await stubs.close()
    return decided


def _journal_of(topo: Topology, instance: str) -> Path:
    [path] = list(topo.workdir.rglob(f"{instance}.sqlite3"))
    return path


def _copy_journal(source: Path, target: Path) -> Path:
    """The file and its WAL (the journal is WAL-mode: its latest commits are in FILE-wal)."""
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
    return target


async def _settled(
    topo: Topology, decided: dict[str, tuple[pb.AuthorizeRequest, pb.AuthorizeResponse]]
) -> None:
    books = await issuer_books(topo)
    assert books is not None
    by_id = {b.request_id: b for b in books.books}
    for rid, (req, resp) in decided.items():
        if resp.decision == pb.APPROVED:
            assert rid in by_id, rid
            book = by_id[rid]
            assert (book.final_minor, book.approval_advices) == (req.amount_minor, 1), (rid, book)
        else:
            assert rid not in by_id or by_id[rid].final_minor == 0, (rid, by_id[rid])


async def test_a_crashed_gateways_journal_is_settled_on_restart_and_from_a_copy(topo: Topology) -> None:
    decided = await _decide_locally(topo, per_gateway=6)
    approvals = [r for d in decided.values() for _, r in d.values() if r.decision == pb.APPROVED]
    assert approvals, "no stand-in approval to settle"
    for gw in topo.gateways:
        gw.kill()
    lost = _journal_of(topo, "gw-2")
    copies = [_copy_journal(lost, topo.workdir / f"copy-{n}-of-gw-2.sqlite3") for n in (1, 2)]
    assert topo.redis is not None
    await asyncio.to_thread(topo.redis.start)
    for sim in topo.sims.values():
        sim.signal(signal.SIGCONT)
    await asyncio.to_thread(topo.start_gateway, 0)  # gw-1's host came back; gw-2's never does
    await assert_eventually(lambda: _settled(topo, decided[0]), timeout_s=60, interval_s=1.0)
    config = str(topo.workdir / "gateway-1.toml")
    for copy in copies:  # from another process and host's view: the copy, twice (two copies)
        done = await asyncio.to_thread(
            run_authgw, ["standin", "replay", "--config", config, "--local-journal", str(copy)]
        )
        assert done.returncode == 0, done.stderr
    await assert_eventually(lambda: _settled(topo, decided[1]), timeout_s=60, interval_s=1.0)
