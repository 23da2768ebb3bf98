"""An issuer-wide simulator ledger in Redis, shared by several hosts.

Every host given the same URL (all hosts of all pools of one issuer) shares
one book per request and the cards' debits: what one host approved, another
repeats; an advice or a reversal reaching any host applies to the same book.

Each operation is optimistic: read the request's record (and the card's
debits when a decision reads them), apply the rules of `chaos.book` in
Python, then commit with one Lua script that writes the new record, its index
entry and the posting only if the record is still what was read and the
decision's premise still holds (the card could still afford an approval, or
still not afford a 51); otherwise read again. So the rules exist once, for
both ledgers, every operation is atomic, and a busy card makes nobody retry
unless its balance crosses the amount at stake (WATCH on the card's debits
made 200 concurrent authorizations of one card give up).

Keys (no PAN is ever written to Redis; cards are their SHA-256 token):

    <prefix>:req:<len(acquirer_id)>:<acquirer_id>:<request_id>   the record, JSON (chaos.book)
    <prefix>:records              list of record keys, oldest first (the books' index)
    <prefix>:debited:<token>      what the card's books hold, as posted (integer)
    <prefix>:cards                set of card tokens ever posted to
    <prefix>:adv:<decision_id>    the record an advice was first booked in (its idempotency key)
    <prefix>:order:<token>        the card's decision_ids in order of first arrival
    <prefix>:seq                  arrival counter of advices

A record and its card live under different keys with no common hash tag: the
ledger needs one Redis server (or one shard), not a Redis Cluster. A request
id's content is checked whatever card it names, which no single slot can do.
Redis errors leave this module as `LedgerUnavailable`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from chaos.book import AdviceBooked, Posting, RequestRecord
from chaos.card_profiles import card_profile, card_token, decide
from chaos.ledger_protocol import (
    AdviceEntry,
    AdviceRecord,
    HoldAttempt,
    IssuerAnswer,
    LedgerSnapshot,
    LedgerUnavailable,
    ReversalEntry,
    ReversalOutcome,
    advice_records,
)

__all__ = ["RedisLedger"]

T = TypeVar("T")

_MAX_TRIES = 50  # optimistic retries before calling the ledger unavailable (contention on one request)
_OWNER_SEPARATOR = "\x1f"

# KEYS: record, posting card's debits, records index, cards set, premise card's debits, advice claim,
# advice order. ARGV: record as read ('' = absent), new record, ttl (s), delta, posting card's token,
# premise ('' = none, '1' = available >= amount, '0' = available < amount), opening balance, amount,
# claim owner ('' = no claim), decision_id. Returns 1 committed, 0 changed meanwhile, -1 claim taken.
_COMMIT_LUA = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if ARGV[6] ~= '' then
  local available = tonumber(ARGV[7]) - (tonumber(redis.call('GET', KEYS[5])) or 0)
  if (available >= tonumber(ARGV[8])) ~= (ARGV[6] == '1') then return 0 end
end
if ARGV[9] ~= '' then
  if redis.call('EXISTS', KEYS[6]) == 1 then return -1 end
  redis.call('SET', KEYS[6], ARGV[9], 'EX', ARGV[3])
  redis.call('RPUSH', KEYS[7], ARGV[10])
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if ARGV[1] == '' then redis.call('RPUSH', KEYS[3], KEYS[1]) end
if tonumber(ARGV[4]) ~= 0 then
  redis.call('INCRBY', KEYS[2], ARGV[4])
  redis.call('SADD', KEYS[4], ARGV[5])
end
return 1
"""


# Every record and every card's debits in one script: no commit lands between them (Books).
# KEYS: records index, cards set. ARGV: prefix of a card's debits key. Returns {docs, tokens, debits}.
_SNAPSHOT_LUA = """
local keys = redis.call('LRANGE', KEYS[1], 0, -1)
local docs = {}
for i, key in ipairs(keys) do docs[i] = redis.call('GET', key) or '' end
local tokens = redis.call('SMEMBERS', KEYS[2])
local debits = {}
for i, token in ipairs(tokens) do debits[i] = redis.call('GET', ARGV[1] .. token) or '0' end
return {docs, tokens, debits}
"""


@dataclass(frozen=True, slots=True)
class _AdviceClaim:
    """A decision_id claimed, with its record, in the transaction that first books it."""

    key: str
    owner: str  # acquirer_id, separator, request_id of the record that books it
    card: str
    decision_id: str


@dataclass(frozen=True, slots=True)
class _Premise:
    """What a decision read of its card: still true at commit, or the operation reads again."""

    card: str
    opening_minor: int
    amount_minor: int
    affordable: bool  # approved: available >= amount; declined 51: available < amount


class _ClaimTaken(Exception):
    """Another transaction booked this decision_id first."""


class _Changed(Exception):
    """The record or the premise changed between the read and the commit."""


class RedisLedger:
    """An issuer-wide ledger in Redis, shared by every simulator host given the same URL."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "authgw:sim", request_ttl_s: int = 86_400
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._request_ttl_s = request_ttl_s
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._snapshot_script = client.register_script(_SNAPSHOT_LUA)
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout_s: float = 0.5,
        connect_timeout_s: float = 0.25,
        max_connections: int = 64,
        prefix: str = "authgw:sim",
    ) -> RedisLedger:
        """A ledger on `redis://HOST:PORT/DB` that fails fast when Redis is dead or hung."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout_s,  # wait for a free connection no longer than for an answer
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
            decode_responses=True,  # every reply is str: the casts below rely on it
        )
        return cls(aioredis.Redis.from_pool(pool), prefix=prefix)  # the client owns and closes the pool

    def _record_key(self, acquirer_id: str, request_id: str) -> str:
        return f"{self._prefix}:req:{len(acquirer_id)}:{acquirer_id}:{request_id}"

    def _debited_key(self, token: str) -> str:
        return f"{self._prefix}:debited:{token}"

    async def _transact(
        self,
        acquirer_id: str,
        request_id: str,
        card: str,
        apply: Callable[[RequestRecord, int], tuple[T, Posting, _Premise | None]],
        claim: _AdviceClaim | None = None,
    ) -> T:
        """Read, `apply(record, card's debits)` -> (result, posting, premise), commit; again if changed.

        `card` ("" for none) is the card whose debits the rules may read. With `claim`, the advice's
        decision_id is claimed for this record in the same commit when `result` is falsy (not a
        duplicate); `_ClaimTaken` when another record claimed it first.
        """
        key = self._record_key(acquirer_id, request_id)
        try:
            for attempt in range(_MAX_TRIES):
                raw = cast(
                    "list[str | None]",
                    await self._redis.mget([key, self._debited_key(card) if card else key]),
                )
                record = (
                    RequestRecord.from_doc(json.loads(raw[0]))
                    if raw[0]
                    else RequestRecord(acquirer_id, request_id)
                )
                result, posting, premise = apply(record, int(raw[1]) if card and raw[1] else 0)
                claiming = None if result else claim  # a duplicate claims nothing
                try:
                    await self._commit(
                        key,
                        read=raw[0] or "",
                        record=record,
                        posting=posting,
                        premise=premise,
                        claim=claiming,
                    )
                except _Changed:
                    await asyncio.sleep(random.uniform(0, 0.001 * (attempt + 1)))  # spread racing hosts
                    continue
                return result
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger transaction failed: {exc}") from exc
        raise LedgerUnavailable(f"ledger contention: {_MAX_TRIES} conflicting transactions in a row")

    async def _commit(
        self,
        key: str,
        *,
        read: str,
        record: RequestRecord,
        posting: Posting,
        premise: _Premise | None,
        claim: _AdviceClaim | None,
    ) -> None:
        """Write the new record and its posting if nothing changed since `read` (see _COMMIT_LUA)."""
        dummy = key  # unused KEYS slots still need a key name
        keys = [
            key, self._debited_key(posting.card) if posting.card else dummy, f"{self._prefix}:records",
            f"{self._prefix}:cards", self._debited_key(premise.card) if premise else dummy,
            claim.key if claim else dummy, f"{self._prefix}:order:{claim.card}" if claim else dummy,
        ]  # fmt: skip
        args: list[str | int] = [
            read, json.dumps(record.to_doc(), separators=(",", ":")), self._request_ttl_s,
            posting.delta_minor, posting.card,
            "" if premise is None else "1" if premise.affordable else "0",
            premise.opening_minor if premise else 0, premise.amount_minor if premise else 0,
            claim.owner if claim else "", claim.decision_id if claim else "",
        ]  # fmt: skip
        committed = int(await self._commit_script(keys=keys, args=args))
        if committed == -1:
            raise _ClaimTaken
        if committed == 0:
            raise _Changed

    async def authorize(self, attempt: HoldAttempt) -> IssuerAnswer:
        token = card_token(attempt.pan)
        profile = card_profile(attempt.pan)

        def apply(record: RequestRecord, debited: int) -> tuple[IssuerAnswer, Posting, _Premise | None]:
            available = profile.balance_minor - debited
            decided: list[str] = []

            def decide_now() -> str:
                decided.append(decide(profile.status, available, attempt.amount_minor))
                return decided[0]

            book, repeated, posting = record.authorize(attempt, token, decide_now)
            premise = None
            if decided and decided[0] in ("00", "51"):  # a decision that read the balance
                premise = _Premise(token, profile.balance_minor, attempt.amount_minor, decided[0] == "00")
            spent = attempt.amount_minor if decided and decided[0] == "00" else 0
            return IssuerAnswer.of(book, repeated, available - spent), posting, premise

        return await self._transact(attempt.acquirer_id, attempt.request_id, token, apply)

    async def advise(self, advice: AdviceEntry) -> bool:
        token = card_token(advice.pan)
        try:
            seq = int(await self._redis.incr(f"{self._prefix}:seq"))
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger advise failed: {exc}") from exc
        booked = AdviceBooked(
            advice.decision_id, advice.approved, advice.amount_minor, advice.answered_at_us,
            advice.origin, advice.response_code, seq,
        )  # fmt: skip

        def apply(record: RequestRecord, _: int) -> tuple[bool, Posting, _Premise | None]:
            duplicate, posting = record.advise(advice.digest, token, advice.amount_minor, booked)
            return duplicate, posting, None

        # A decision_id is booked in the record of the first request it came with: a redelivery
        # carrying another request is still a duplicate (idempotent by decision_id alone).
        claim_key = f"{self._prefix}:adv:{advice.decision_id}"
        for _ in range(_MAX_TRIES):
            try:
                owner = cast("str | None", await self._redis.get(claim_key))
            except RedisError as exc:
                raise LedgerUnavailable(f"ledger advise failed: {exc}") from exc
            if owner is not None:
                acquirer_id, _, request_id = owner.partition(_OWNER_SEPARATOR)
                return await self._transact(acquirer_id, request_id, "", apply)
            claim = _AdviceClaim(
                claim_key,
                f"{advice.acquirer_id}{_OWNER_SEPARATOR}{advice.request_id}",
                token,
                advice.decision_id,
            )
            try:
                return await self._transact(advice.acquirer_id, advice.request_id, "", apply, claim)
            except _ClaimTaken:
                continue  # the same decision_id, first booked by another host a moment ago
        raise LedgerUnavailable(f"ledger contention on decision_id {advice.decision_id}")

    async def reverse(self, reversal: ReversalEntry) -> ReversalOutcome:
        def apply(record: RequestRecord, _: int) -> tuple[ReversalOutcome, Posting, _Premise | None]:
            status, duplicate, posting = record.reverse(
                reversal.reversal_id, reversal.final_amount_minor, reversal.original_amount_minor
            )
            return ReversalOutcome(status, duplicate), posting, None

        return await self._transact(reversal.acquirer_id, reversal.original_request_id, "", apply)

    async def records(self, page_size: int) -> AsyncIterator[list[RequestRecord]]:
        start = 0
        while True:
            try:
                keys = cast(
                    "list[str]",
                    await self._redis.lrange(f"{self._prefix}:records", start, start + page_size - 1),
                )
                docs = cast("list[str | None]", await self._redis.mget(keys)) if keys else []
            except RedisError as exc:
                raise LedgerUnavailable(f"ledger read failed: {exc}") from exc
            yield [RequestRecord.from_doc(json.loads(doc)) for doc in docs if doc]
            if len(keys) < page_size:
                return
            start += page_size

    async def card_debits(self) -> dict[str, int]:
        try:
            tokens = sorted(cast("set[str]", await self._redis.smembers(f"{self._prefix}:cards")))
            values = cast(
                "list[str | None]",
                await self._redis.mget([self._debited_key(t) for t in tokens]) if tokens else [],
            )
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger read failed: {exc}") from exc
        return {t: int(v or 0) for t, v in zip(tokens, values, strict=True)}

    async def snapshot(self) -> LedgerSnapshot:
        keys = [f"{self._prefix}:records", f"{self._prefix}:cards"]
        try:
            docs, tokens, debits = cast(
                "list[list[str]]", await self._snapshot_script(keys=keys, args=[self._debited_key("")])
            )
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger read failed: {exc}") from exc
        records = [RequestRecord.from_doc(json.loads(doc)) for doc in docs if doc]  # '' = expired
        return LedgerSnapshot(records, {t: int(v) for t, v in zip(tokens, debits, strict=True)})

    async def advices(self) -> list[AdviceRecord]:
        records: list[RequestRecord] = []
        async for page in self.records(1000):
            records += page
        return advice_records(records)

    async def advice_order(self, pan: str) -> list[str]:
        try:
            order = await self._redis.lrange(f"{self._prefix}:order:{card_token(pan)}", 0, -1)
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger read failed: {exc}") from exc
        return cast("list[str]", order)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._redis.aclose()
