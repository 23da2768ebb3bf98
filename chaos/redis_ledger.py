"""An issuer-wide simulator ledger in Redis, shared by several hosts.

Every host given the same URL (all hosts of all pools of one issuer) shares
one book per request and the cards' debits: what one host approved, another
repeats; an advice or a reversal reaching any host applies to the same book.

Each operation is one optimistic transaction (WATCH the request's record, and
the card's debits when a decision depends on them; read; apply the rules of
`chaos.book` in Python; MULTI/EXEC the new record, its index entry and the
posting), retried when another host changed a watched key in between. So the
rules exist once, for both ledgers, and every operation is atomic.

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

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, WatchError

from chaos.book import AdviceBooked, Posting, RequestRecord
from chaos.card_profiles import card_profile, card_token, decide
from chaos.ledger_protocol import (
    AdviceEntry,
    AdviceRecord,
    HoldAttempt,
    IssuerAnswer,
    LedgerUnavailable,
    ReversalEntry,
    ReversalOutcome,
    advice_records,
)

__all__ = ["RedisLedger"]

T = TypeVar("T")

_MAX_TRIES = 50  # optimistic retries before calling the ledger unavailable (contention on one request)
_OWNER_SEPARATOR = "\x1f"


@dataclass(frozen=True, slots=True)
class _AdviceClaim:
    """A decision_id claimed, with its record, in the transaction that first books it."""

    key: str
    owner: str  # acquirer_id, separator, request_id of the record that books it
    card: str
    decision_id: str


class _ClaimTaken(Exception):
    """Another transaction booked this decision_id first."""


class RedisLedger:
    """An issuer-wide ledger in Redis, shared by every simulator host given the same URL."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "authgw:sim", request_ttl_s: int = 86_400
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._request_ttl_s = request_ttl_s
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
        watch_card: str,
        apply: Callable[[RequestRecord, int], tuple[T, Posting]],
        claim: _AdviceClaim | None = None,
    ) -> T:
        """Run `apply(record, card's debits)` -> (result, posting) as one transaction.

        `watch_card` ("" for none) is the card whose debits the rules read. With `claim`, the
        advice's decision_id is claimed for this record in the same transaction when `result` is
        falsy (not a duplicate); `_ClaimTaken` when another record claimed it first.
        """
        key = self._record_key(acquirer_id, request_id)
        watched = [key, self._debited_key(watch_card) if watch_card else key]
        if claim is not None:
            watched.append(claim.key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(_MAX_TRIES):
                    await pipe.watch(*watched)
                    raw = await pipe.mget(watched)
                    if claim is not None and raw[2]:
                        raise _ClaimTaken(raw[2])
                    record = (
                        RequestRecord.from_doc(json.loads(raw[0]))
                        if raw[0]
                        else RequestRecord(acquirer_id, request_id)
                    )
                    debited = int(raw[1]) if watch_card and raw[1] else 0
                    result, posting = apply(record, debited)
                    pipe.multi()  # type: ignore[no-untyped-call]  # unannotated in redis-py
                    self._write(pipe, key, record, is_new=not raw[0])
                    self._post(pipe, posting)
                    if claim is not None and not result:
                        pipe.set(claim.key, claim.owner, ex=self._request_ttl_s)
                        pipe.rpush(f"{self._prefix}:order:{claim.card}", claim.decision_id)
                    try:
                        await pipe.execute()
                    except WatchError:
                        continue  # another host changed the record or the card: read again
                    return result
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger transaction failed: {exc}") from exc
        raise LedgerUnavailable(f"ledger contention: {_MAX_TRIES} conflicting transactions in a row")

    def _write(self, pipe: Pipeline, key: str, record: RequestRecord, *, is_new: bool) -> None:
        pipe.set(key, json.dumps(record.to_doc(), separators=(",", ":")), ex=self._request_ttl_s)
        if is_new:
            pipe.rpush(f"{self._prefix}:records", key)

    def _post(self, pipe: Pipeline, posting: Posting) -> None:
        if posting.delta_minor:
            pipe.incrby(self._debited_key(posting.card), posting.delta_minor)
            pipe.sadd(f"{self._prefix}:cards", posting.card)

    async def authorize(self, attempt: HoldAttempt) -> IssuerAnswer:
        token = card_token(attempt.pan)
        profile = card_profile(attempt.pan)

        def apply(record: RequestRecord, debited: int) -> tuple[IssuerAnswer, Posting]:
            available = profile.balance_minor - debited
            book, repeated, posting = record.authorize(
                attempt, token, lambda: decide(profile.status, available, attempt.amount_minor)
            )
            return IssuerAnswer.of(book, repeated), posting

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

        def apply(record: RequestRecord, _: int) -> tuple[bool, Posting]:
            return record.advise(advice.digest, token, advice.amount_minor, booked)

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
        def apply(record: RequestRecord, _: int) -> tuple[ReversalOutcome, Posting]:
            status, duplicate, posting = record.reverse(reversal.reversal_id, reversal.final_amount_minor)
            return ReversalOutcome(status, duplicate), posting

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
