"""After a chaos run: did every stand-in decision reach the issuer exactly once in effect?

The truth is on both ends. The cardholders' side is what the load generator
received (each stand-in answer carries its decision id). The issuer's side is
the simulators' shared ledger: every advice it recorded, with the request it
belongs to, how often it arrived and whether it was posted. Settlement runs
inside the gateways; this waits for it to finish, then compares.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import grpc
from rich.console import Console

from chaos.load import Sample
from chaos.sim_control import SimControl
from chaos.topology import Topology

__all__ = ["SettlementCheck", "compare", "verify_settlement"]

UNRECORDED_RULE_CODE = "91"  # a stand-in 91 may be unrecorded ("journal.unavailable"): nothing to advise


@dataclass(frozen=True, slots=True)
class SettlementCheck:
    journaled: int  # stand-in decisions the cardholders received (each journaled before it was answered)
    advised: int  # of those, advices the issuer recorded
    applied_at_issuer: int  # approved ones posted by the issuer
    missing: int  # decisions the cardholders received that the issuer never recorded
    duplicates: int  # postings with no effect-once guarantee: a request posted twice, or an unknown posting
    declines_debited: int  # declined decisions the issuer posted (must never happen)
    redelivered: int  # advices that arrived more than once (harmless: the issuer deduplicates)
    waited_s: float

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class IssuerAdvice:
    decision_id: str
    request_id: str
    received: int
    applied: bool
    amount_minor: int


def compare(
    samples: Sequence[Sample], advices: Sequence[IssuerAdvice], waited_s: float = 0.0
) -> SettlementCheck:
    """Cardholders' stand-in answers against the issuer's advice records."""
    expected = {s.decision_id: s for s in samples if s.answered and s.source == "STAND_IN" and s.decision_id}
    expected = {d: s for d, s in expected.items() if s.approved or s.response_code != UNRECORDED_RULE_CODE}
    by_id = {a.decision_id: a for a in advices}
    advised = [d for d in expected if d in by_id]
    posted_requests = Counter(a.request_id for a in advices if a.applied)
    double_posted = sum(n - 1 for n in posted_requests.values() if n > 1)
    # An approval posted that no cardholder saw: fine only if its request got no answer (client timeout).
    unanswered = {s.request_id for s in samples if not s.answered}
    unknown = [
        a for a in advices if a.applied and a.decision_id not in expected and a.request_id not in unanswered
    ]
    return SettlementCheck(
        journaled=len(expected),
        advised=len(advised),
        applied_at_issuer=sum(1 for d in advised if by_id[d].applied),
        missing=len(expected) - len(advised),
        duplicates=double_posted + len(unknown),
        declines_debited=sum(1 for d in advised if by_id[d].applied and not expected[d].approved),
        redelivered=sum(a.received - 1 for a in advices if a.received > 1),
        waited_s=round(waited_s, 1),
    )


async def issuer_advices(topo: Topology) -> list[IssuerAdvice]:
    """Every advice in the issuer's shared ledger (asked of any live simulator)."""
    for sim in topo.sims.values():
        if not sim.alive():
            continue
        try:
            async with SimControl(sim.address, timeout_s=5.0) as ctl:
                report = await ctl.report()
        except grpc.aio.AioRpcError:
            continue  # a hung or dying simulator: ask the next one
        return [
            IssuerAdvice(a.decision_id, a.request_id, a.received, a.applied, a.amount_minor)
            for a in report.advices
        ]
    return []


async def verify_settlement(
    topo: Topology, samples: Sequence[Sample], timeout_s: float, console: Console
) -> SettlementCheck:
    """Wait (up to timeout_s) until the issuer has every stand-in decision, then compare."""
    started = time.monotonic()
    check = compare(samples, [])
    if check.journaled == 0:
        return check
    console.log(f"waiting for settlement of {check.journaled} stand-in decisions")
    while True:
        check = compare(samples, await issuer_advices(topo), time.monotonic() - started)
        if check.missing == 0 or time.monotonic() - started > timeout_s:
            return check
        await asyncio.sleep(1.0)
