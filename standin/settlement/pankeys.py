"""Which PAN keys unsettled entries still need: when an operator may drop a retired key.

A retired PAN key (standin/keyconfig.py) must stay configured while any entry sealed with
it can still be advised: in a partition stream (unsettled), among the dead letters (they
are sent again once replayed), or in a gateway's local SQLite backlog. `authgw standin
status` reports, per key id:

    role            current | retired (in this config) | not configured (its entries are
                    dead letters until the key is added back)
    journal         entries in the partition streams
    dead_letters    dead letters
    local           this host's local backlog (the config's own SQLite journal)
    local_fleet     local backlogs the gateways report in their settlement heartbeats (every
                    heartbeat still kept, stale ones too: a key is rather kept a minute longer
                    than dropped early)
    current_on      gateways whose heartbeat names this key as their current one (a rotation
                    is done once every live gateway is on the new key)
    droppable       retired, no gateway's current key, and every count above is 0 (never
                    when the journal scan stopped at its cap)

A gateway that is down sends no heartbeat: its local journal is not seen here. Move it
first (`authgw standin replay --local-journal FILE`) or keep the key until it is back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from standin.crypto import PanKeyring
from standin.redis_io import RedisGate
from standin.settlement.deadletter import DeadLetterView
from standin.settlement.keys import stream_key

__all__ = ["JournalScan", "pan_key_report", "scan_journal"]

_SCAN_PAGE = 1000
_SCAN_CAP = 200_000  # journal entries scanned per partition (status stays quick)


@dataclass(slots=True)
class JournalScan:
    """What one pass over every partition stream found."""

    reversals: int = 0
    """Reversal entries (not yet acknowledged by the issuer)."""
    oldest_reversal_ms: int | None = None
    by_pan_key: Counter[str] = field(default_factory=Counter)
    """Entries by the id of the PAN key that sealed them."""
    complete: bool = True
    """False when some partition held more than the scan cap."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decided_at_ms(fields: Mapping[str, str]) -> int | None:
    try:
        return int(datetime.fromisoformat(fields["decided_at"]).timestamp() * 1000)
    except (KeyError, ValueError):
        return None


async def scan_journal(gate: RedisGate, partitions: int) -> JournalScan:
    """Read every partition stream once (up to the cap each)."""
    scan = JournalScan()
    for p in range(partitions):
        await _scan_partition(gate, p, scan)
    return scan


async def _scan_partition(gate: RedisGate, p: int, scan: JournalScan) -> None:
    start, read = "-", 0
    while True:
        if read >= _SCAN_CAP:
            scan.complete = False
            return

        async def op(start: str = start) -> list[Any]:
            page = await gate.redis.xrange(stream_key(p), min=start, max="+", count=_SCAN_PAGE)
            return list(page or [])

        page = await gate.call("journal scan", op)
        for _, raw in page:
            fields = {_text(k): _text(v) for k, v in raw.items()}
            scan.by_pan_key[fields.get("pan_key_id", "")] += 1
            if fields.get("entry") == "reversal":
                scan.reversals += 1
                at = _decided_at_ms(fields)
                if at is not None and (scan.oldest_reversal_ms is None or at < scan.oldest_reversal_ms):
                    scan.oldest_reversal_ms = at
        read += len(page)
        if len(page) < _SCAN_PAGE:
            return
        start = "(" + _text(page[-1][0])


def pan_key_report(
    keyring: PanKeyring,
    scan: JournalScan,
    letters: Iterable[DeadLetterView],
    local_here: Mapping[str, int],
    heartbeats: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """The `pan_keys` part of `authgw standin status` (module docstring)."""
    dead = Counter(letter.pan_key_id for letter in letters)
    fleet: Counter[str] = Counter()
    current_on: dict[str, list[str]] = {}
    for hb in heartbeats:
        for key_id, count in (hb.get("local_by_pan_key") or {}).items():
            fleet[str(key_id)] += int(count)
        if hb.get("pan_key_id"):
            current_on.setdefault(str(hb["pan_key_id"]), []).append(str(hb.get("instance", "?")))
    ids = [keyring.key_id, *keyring.retired_ids]
    seen = set(scan.by_pan_key) | set(dead) | set(local_here) | set(fleet) | set(current_on)
    ids += sorted(seen - set(ids))
    rows = []
    for key_id in ids:
        role = "retired" if keyring.knows(key_id) else "not configured"
        role = "current" if key_id == keyring.key_id else role
        row: dict[str, Any] = {
            "key_id": key_id,
            "role": role,
            "journal": scan.by_pan_key.get(key_id, 0),
            "dead_letters": dead.get(key_id, 0),
            "local": int(local_here.get(key_id, 0)),
            "local_fleet": fleet.get(key_id, 0),
            "current_on": sorted(current_on.get(key_id, [])),
        }
        needed = any(row[k] for k in ("journal", "dead_letters", "local", "local_fleet", "current_on"))
        row["droppable"] = role == "retired" and scan.complete and not needed
        rows.append(row)
    return {"current": keyring.key_id, "complete": scan.complete, "keys": rows}
