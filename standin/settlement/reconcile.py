"""`authgw standin reconcile`: decisions journaled against advices the issuer acknowledged.

Settlement deletes an entry from the journal stream in the same script that records
the issuer's acknowledgement in the partition's settled hash (settle_store.py), so
the journal's history is never lost to trimming: every decision ever journaled is in
exactly one of

    settled       acknowledged by the issuer (decision_id -> approved, amount, currency, gateways)
    journal       in its partition stream, not yet acknowledged (delivered or not)
    dead_letter   given up on, with its last error (settle_deadletter.py)
    local         in this host's SQLite journal, not yet moved to Redis (migrate.py)

Journaled = all four; acknowledged = settled. Both are totalled by count and amount
(approved / declined / reversed, per currency, per deciding gateway); every journaled
entry not acknowledged is listed by id with where it is. An entry both settled and
still journaled (appended again after a crash, past the append dedupe window) is
listed apart: harmless, the worker acknowledges it without sending it again.

Reversals are matched to their originals by (acquirer, original request id): a
reversal whose original is no stand-in decision known here is an orphan (a reversal
of an issuer decision, or of one never seen: the issuer decides), listed with where
it is. Settled records are kept for SettlementSettings.settled_retention (one hash
per day): reconcile sees that far back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from standin.redis_io import RedisGate
from standin.settings import JournalSettings
from standin.settlement.deadletter import dead_letters
from standin.settlement.keys import settled_prefix, stream_key

__all__ = ["JournaledDecision", "from_fields", "reconcile"]

_PAGE = 1000


@dataclass(frozen=True, slots=True)
class JournaledDecision:
    """One decision as reconcile sees it (no PAN)."""

    decision_id: str
    where: str  # settled | journal | dead_letter | local
    approved: bool
    amount_minor: int
    currency: str
    gateway_instance: str
    decided_at: str = ""
    error: str = ""
    kind: str = "decision"  # decision | reversal
    request_key: str = ""  # "<acquirer>:<request id>" (a reversal's: of its original)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def from_fields(fields: dict[str, str], where: str, error: str = "") -> JournaledDecision:
    """A journal entry's decision (stream or local journal fields)."""
    reversal = fields.get("entry") == "reversal"
    amount = fields.get("final_amount_minor" if reversal else "amount_minor", "0")
    request = fields.get("original_request_id" if reversal else "request_id", "")
    return JournaledDecision(
        decision_id=fields.get("decision_id", "?"),
        where=where,
        approved=fields.get("approved") == "1",
        amount_minor=int(amount) if amount.isdigit() else 0,
        currency=fields.get("currency", ""),
        gateway_instance=fields.get("gateway_instance", "?"),
        decided_at=fields.get("decided_at", ""),
        error=error,
        kind="reversal" if reversal else "decision",
        request_key=f"{fields.get('acquirer_id', '0')}:{request}",
    )


def _totals(decisions: Iterable[JournaledDecision]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "count": 0,
        "approved": {"count": 0, "amount_minor": {}},
        "declined": {"count": 0},
        "reversals": {"count": 0},
    }
    by_gateway: dict[str, dict[str, int]] = {}
    for d in decisions:
        out["count"] += 1
        g = by_gateway.setdefault(d.gateway_instance, {"approved": 0, "declined": 0, "reversals": 0})
        if d.kind == "reversal":
            out["reversals"]["count"] += 1
            g["reversals"] += 1
        elif d.approved:
            out["approved"]["count"] += 1
            amounts = out["approved"]["amount_minor"]
            amounts[d.currency] = amounts.get(d.currency, 0) + d.amount_minor
            g["approved"] += 1
        else:
            out["declined"]["count"] += 1
            g["declined"] += 1
    out["by_gateway"] = by_gateway
    return out


async def _settled(gate: RedisGate, p: int) -> dict[str, JournaledDecision]:
    out: dict[str, JournaledDecision] = {}

    async def buckets() -> list[str]:
        return [_text(k) async for k in gate.redis.scan_iter(match=settled_prefix(p) + "*", count=_PAGE)]

    for bucket in await gate.call("settled buckets", buckets):

        async def op(bucket: str = bucket) -> dict[Any, Any]:
            page: dict[Any, Any] = await gate.redis.hgetall(bucket)
            return page

        for raw_id, raw in (await gate.call("settled read", op)).items():
            decision_id = _text(raw_id)
            outcome, amount, currency, decider, *rest = _text(raw).split("|")
            request_key = rest[3] if len(rest) > 3 else ""
            out[decision_id] = JournaledDecision(
                decision_id, "settled", outcome == "approved", int(amount), currency, decider,
                kind="reversal" if outcome == "reversed" else "decision", request_key=request_key,
            )  # fmt: skip
    return out


async def _journal(gate: RedisGate, p: int) -> list[JournaledDecision]:
    out: list[JournaledDecision] = []
    start = "-"
    while True:

        async def op(start: str = start) -> list[Any]:
            page = await gate.redis.xrange(stream_key(p), min=start, max="+", count=_PAGE)
            return list(page or [])

        page = await gate.call("journal scan", op)
        for _, raw in page:
            out.append(from_fields({_text(k): _text(v) for k, v in raw.items()}, "journal"))
        if len(page) < _PAGE:
            return out
        start = "(" + _text(page[-1][0])


async def reconcile(
    gate: RedisGate,
    journal: JournalSettings,
    *,
    local: Iterable[JournaledDecision] = (),
    limit: int = 1000,
) -> dict[str, Any]:
    """The reconciliation report (a JSON-ready dict).

    Args:
        local: this host's local-journal decisions not yet moved to Redis.
        limit: at most this many differences are listed (all are counted).
    """
    settled: dict[str, JournaledDecision] = {}
    unsettled: list[JournaledDecision] = []
    for p in range(journal.partitions):
        settled |= await _settled(gate, p)
        unsettled += await _journal(gate, p)
    unsettled += [
        JournaledDecision(
            d.decision_id, "dead_letter", d.approved, d.amount_minor, d.currency, d.gateway_instance,
            d.decided_at, d.error,
        )
        for d in await dead_letters(gate, journal.partitions)
    ]  # fmt: skip
    unsettled += list(local)
    twice = [d for d in unsettled if d.decision_id in settled]
    missing: dict[str, JournaledDecision] = {}
    for d in unsettled:
        if d.decision_id not in settled:
            missing.setdefault(d.decision_id, d)
    journaled = list(settled.values()) + list(missing.values())
    originals = {d.request_key for d in journaled if d.kind == "decision"}
    orphans = [d for d in journaled if d.kind == "reversal" and d.request_key not in originals]
    return {
        "balanced": not missing,
        "journaled": _totals(journaled),
        "acknowledged": _totals(settled.values()),
        "not_acknowledged": _totals(missing.values()),
        "differences": [asdict(d) for d in list(missing.values())[:limit]],
        "differences_listed": min(limit, len(missing)),
        "acknowledged_but_still_journaled": [asdict(d) for d in twice[:limit]],
        "reversals": {
            "matched": sum(1 for d in journaled if d.kind == "reversal") - len(orphans),
            "orphans": len(orphans),
            "orphans_listed": [asdict(d) for d in orphans[:limit]],
        },
    }
