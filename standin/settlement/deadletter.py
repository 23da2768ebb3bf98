"""Dead letters: journal entries settlement gave up on, kept with their last error until replayed.

An entry lands in `authgw:{journal:<p>}:dead` when the issuer rejected its advice
`max_attempts` times, refused it as malformed, or when it cannot be decoded (e.g. its
PAN was sealed with a key this worker does not have). Nothing is dropped: the entry keeps
every journal field, plus dead_error, dead_attempts, dead_at_ms, dead_from (its id in the
journal) and dead_worker.

`requeue` (`authgw standin replay --dead-letters`) moves dead letters back into their
partition's journal stream, atomically per entry, without the dead_* fields: the running
settlement workers send them again like any new entry, paced and traced. Run it once the
cause is fixed (issuer rule, key rotation...); an entry that still fails comes back here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript

from standin.redis_io import RedisGate
from standin.settlement.keys import dead_key, stream_key

__all__ = ["DeadLetterView", "dead_letters", "requeue"]

_REQUEUE = """
-- KEYS[1] dead letters  KEYS[2] journal stream  ARGV: dead-letter ids
local moved = 0
for _, id in ipairs(ARGV) do
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if #found == 1 then
    local f = found[1][2]
    local out = {}
    for i = 1, #f, 2 do
      if string.sub(f[i], 1, 5) ~= 'dead_' then
        out[#out + 1] = f[i]
        out[#out + 1] = f[i + 1]
      end
    end
    redis.call('XADD', KEYS[2], '*', unpack(out))
    redis.call('XDEL', KEYS[1], id)
    moved = moved + 1
  end
end
return moved
"""

_PAGE = 500


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """One dead letter, as an operator sees it (no PAN)."""

    partition: int
    dead_id: str
    decision_id: str
    gateway_instance: str
    approved: bool
    amount_minor: int
    currency: str
    decided_at: str
    error: str
    attempts: int
    dead_at_ms: int
    pan_key_id: str = ""
    """The PAN key the entry needs (an entry dead for an unknown key waits for this one)."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _view(partition: int, dead_id: str, f: dict[str, str]) -> DeadLetterView:
    amount = f.get("amount_minor", "0")
    return DeadLetterView(
        partition=partition,
        dead_id=dead_id,
        decision_id=f.get("decision_id", "?"),
        gateway_instance=f.get("gateway_instance", "?"),
        approved=f.get("approved") == "1",
        amount_minor=int(amount) if amount.isdigit() else 0,
        currency=f.get("currency", ""),
        decided_at=f.get("decided_at", ""),
        error=f.get("dead_error", ""),
        attempts=int(f.get("dead_attempts", "0") or 0),
        dead_at_ms=int(f.get("dead_at_ms", "0") or 0),
        pan_key_id=f.get("pan_key_id", ""),
    )


async def dead_letters(gate: RedisGate, partitions: int) -> list[DeadLetterView]:
    """Every dead letter of every partition, oldest first per partition."""
    out: list[DeadLetterView] = []
    for p in range(partitions):
        start = "-"
        while True:

            async def op(start: str = start, p: int = p) -> list[Any]:
                page = await gate.redis.xrange(dead_key(p), min=start, max="+", count=_PAGE)
                return list(page or [])

            page = await gate.call("dead letters", op)
            for raw_id, raw in page:
                fields = {_text(k): _text(v) for k, v in raw.items()}
                out.append(_view(p, _text(raw_id), fields))
            if len(page) < _PAGE:
                break
            start = "(" + _text(page[-1][0])
    return out


async def requeue(gate: RedisGate, partitions: int, decision_ids: Collection[str] | None = None) -> int:
    """Put dead letters back in the journal (all, or those of `decision_ids`); returns how many."""
    script: AsyncScript = gate.redis.register_script(_REQUEUE)
    chosen: dict[int, list[str]] = {}
    for letter in await dead_letters(gate, partitions):
        if decision_ids is None or letter.decision_id in decision_ids:
            chosen.setdefault(letter.partition, []).append(letter.dead_id)
    moved = 0
    for p, ids in chosen.items():
        for i in range(0, len(ids), 100):
            chunk = ids[i : i + 100]

            async def op(p: int = p, chunk: list[str] = chunk) -> int:
                reply: int = await script(keys=[dead_key(p), stream_key(p)], args=chunk)
                return reply

            moved += await gate.call("requeue dead letters", op)
    return moved
