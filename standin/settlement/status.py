"""`authgw standin status`: where settlement stands, from Redis alone (any host can ask).

    journal        per partition: unsettled entries (settled ones are deleted), delivered but
                   not acknowledged, dead letters, which worker holds the lease; the oldest
                   unsettled decision (journal heads, dead letters, local backlog) and its age;
                   how long ago the newest decision was journaled
    gateways       per gateway: decisions settled (approved / declined: count and amount per
                   currency) as the gateway that decided them and as the one that settled them,
                   dead letters, and its settlement worker's last heartbeat: state, whether it
                   sees a healthy issuer (stand-in mode "off") or not ("on"), partitions held,
                   pacing rate, local SQLite backlog, the ids of its card-token and PAN keys
                   (a key rotation is done when every gateway shows the new ones)
    pan_keys       per PAN key id: entries that still need it, and whether a retired key may be
                   dropped (pankeys.py)
A heartbeat older than three intervals is reported as stale (the worker may be dead: its
partitions move to another worker once its leases expire).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import ResponseError

from standin.crypto import PanKeyring
from standin.redis_io import RedisGate
from standin.settings import JournalSettings
from standin.settlement.deadletter import dead_letters
from standin.settlement.keys import WORKERS_KEY, counts_key, lease_key, stream_key
from standin.settlement.pankeys import pan_key_report, scan_journal

__all__ = ["Totals", "add_counts", "settlement_status"]

_HEAD = 100  # journal entries looked at per partition for the oldest decision (migrated ones come late)

Totals = dict[str, dict[str, Any]]
"""{"approved": {"count": n, "amount_minor": {currency: n}}, "declined": {...}}"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _empty_totals() -> Totals:
    return {o: {"count": 0, "amount_minor": {}} for o in ("approved", "declined", "reversed")}


def add_counts(into: dict[str, dict[str, Totals]], counts: Mapping[str, int]) -> None:
    """Fold settled-counts fields ("<role>:<gateway>|<outcome>|count|<currency>") into per-gateway totals."""
    for field, value in counts.items():
        who, _, rest = field.partition("|")
        outcome, _, metric = rest.partition("|")
        role, _, gateway = who.partition(":")
        if role not in ("decider", "settler") or outcome not in ("approved", "declined", "reversed"):
            continue
        totals = into.setdefault(gateway, {}).setdefault(f"settled_as_{role}", _empty_totals())[outcome]
        if metric == "count":
            totals["count"] += value
        else:
            totals["amount_minor"][metric] = totals["amount_minor"].get(metric, 0) + value


def _decided_at_ms(fields: Mapping[str, str]) -> int | None:
    try:
        return int(datetime.fromisoformat(fields["decided_at"]).timestamp() * 1000)
    except (KeyError, ValueError):
        return None


async def _partition(gate: RedisGate, p: int, group: str) -> dict[str, Any]:
    async def op() -> dict[str, Any]:
        pipe = gate.redis.pipeline(transaction=False)
        pipe.xlen(stream_key(p))
        pipe.xrange(stream_key(p), count=_HEAD)
        pipe.xrevrange(stream_key(p), count=1)
        pipe.hgetall(counts_key(p))
        pipe.get(lease_key(p))
        length, head, tail, counts, holder = await pipe.execute()
        try:
            pending = int((await gate.redis.xpending(stream_key(p), group))["pending"])
        except ResponseError:  # no group yet: nothing delivered
            pending = 0
        return {
            "length": length,
            "head": [(_text(i), {_text(k): _text(v) for k, v in f.items()}) for i, f in head],
            "newest_ms": int(_text(tail[0][0]).split("-")[0]) if tail else None,
            "counts": {_text(k): int(v) for k, v in counts.items()},
            "holder": _text(holder) if holder is not None else None,
            "pending": pending,
        }

    result: dict[str, Any] = await gate.call("settlement status", op)
    return result


async def _workers(gate: RedisGate) -> dict[str, dict[str, Any]]:
    async def op() -> dict[bytes | str, bytes | str]:
        raw: dict[bytes | str, bytes | str] = await gate.redis.hgetall(WORKERS_KEY)
        return raw

    out: dict[str, dict[str, Any]] = {}
    for k, v in (await gate.call("workers", op)).items():
        try:
            out[_text(k)] = json.loads(v)
        except ValueError:
            continue
    return out


def _worker_rows(
    workers: dict[str, dict[str, Any]], now_ms: int, heartbeat: timedelta
) -> list[tuple[str, dict[str, Any]]]:
    """(gateway instance, status row) of each settlement worker's last heartbeat."""
    stale_ms = 3 * heartbeat.total_seconds() * 1000
    rows = []
    for worker, hb in sorted(workers.items()):
        age_ms = now_ms - int(hb.get("updated_ms", 0))
        row = {
            "worker": worker,
            "state": hb.get("state"),
            "standin_mode": "off" if hb.get("issuer_healthy") else "on",
            "stale": age_ms > stale_ms,
            "heartbeat_age_s": round(age_ms / 1000, 1),
            "partitions": hb.get("partitions", []),
            "rate_per_s": hb.get("rate_per_s"),
            "sent": hb.get("sent", 0),
            "dead_letters": hb.get("dead_letters", 0),
            "token_key_id": hb.get("token_key_id"),
            "pan_key_id": hb.get("pan_key_id"),
            "local_backlog": hb.get("local_backlog"),
            "oldest_local_ms": hb.get("oldest_local_ms"),
        }
        rows.append((str(hb.get("instance", worker.rpartition(":")[0])), row))
    return rows


async def settlement_status(
    gate: RedisGate,
    journal: JournalSettings,
    *,
    now_ms: int,
    heartbeat: timedelta = timedelta(seconds=2),
    local_backlog: tuple[int, int | None] | None = None,
    keyring: PanKeyring | None = None,
    local_by_pan_key: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The settlement part of `authgw standin status`.

    Args:
        local_backlog: (count, oldest decided_at ms) of this host's local SQLite journal, if read.
        keyring: this config's PAN keys: adds the `pan_keys` report (pankeys.py).
        local_by_pan_key: this host's local backlog by PAN key id.
    """
    gateways: dict[str, dict[str, Any]] = {}
    partitions = []
    oldest: tuple[int, str, str] | None = None  # (decided_at_ms, decision_id, where)
    newest_ms: int | None = None
    for p in range(journal.partitions):
        part = await _partition(gate, p, journal.consumer_group)
        add_counts(gateways, part["counts"])
        for _, fields in part["head"]:
            at = _decided_at_ms(fields)
            if at is not None and (oldest is None or at < oldest[0]):
                oldest = (at, fields.get("decision_id", "?"), "journal")
        if part["newest_ms"] is not None:
            newest_ms = max(newest_ms or 0, part["newest_ms"])
        partitions.append(
            {
                "partition": p,
                "unsettled": part["length"],
                "delivered_unacknowledged": part["pending"],
                "dead_letters": 0,
                "lease_holder": part["holder"],
            }
        )
    letters = await dead_letters(gate, journal.partitions)
    for letter in letters:
        partitions[letter.partition]["dead_letters"] += 1
        g = gateways.setdefault(letter.gateway_instance, {})
        g["dead_letters"] = g.get("dead_letters", 0) + 1
        at = _decided_at_ms({"decided_at": letter.decided_at})
        if at is not None and (oldest is None or at < oldest[0]):
            oldest = (at, letter.decision_id, "dead_letter")
    local_oldest = local_backlog[1] if local_backlog is not None and local_backlog[0] else None
    if local_oldest is not None and (oldest is None or local_oldest < oldest[0]):
        oldest = (local_oldest, "", "local")
    workers = await _workers(gate)
    for instance, worker in _worker_rows(workers, now_ms, heartbeat):
        gateways.setdefault(instance, {}).setdefault("workers", []).append(worker)
    scan = await scan_journal(gate, journal.partitions)
    oldest_rev = scan.oldest_reversal_ms
    out: dict[str, Any] = {
        "reversals_pending": {
            "count": scan.reversals,
            "oldest_age_s": None if oldest_rev is None else round((now_ms - oldest_rev) / 1000, 1),
        },
        "unsettled": sum(p["unsettled"] for p in partitions),
        "dead_letters": len(letters),
        "oldest_unsettled": None
        if oldest is None
        else {"decision_id": oldest[1], "where": oldest[2], "age_s": round((now_ms - oldest[0]) / 1000, 1)},
        "newest_decision_age_s": None if newest_ms is None else round((now_ms - newest_ms) / 1000, 1),
        "partitions": partitions,
        "gateways": gateways,
    }
    if keyring is not None:
        # every heartbeat still kept, stale ones too: a key is rather kept too long than dropped early
        out["pan_keys"] = pan_key_report(keyring, scan, letters, local_by_pan_key or {}, workers.values())
    return out
