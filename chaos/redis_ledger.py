"""An issuer-wide simulator ledger in Redis, shared by several hosts.

Every host given the same URL (all hosts of all pools of one issuer) shares
idempotency and balances. The Lua scripts touch only keys tagged with the
card's token (`authgw:sim:{<sha256 of PAN>}:…`), so each runs in one Redis
Cluster slot; no PAN is ever written to Redis. Redis errors leave this module
as `LedgerUnavailable`.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from chaos.card_profiles import card_profile, card_token
from chaos.ledger_protocol import AdviceEntry, AdviceRecord, HoldAttempt, IssuerAnswer, LedgerUnavailable

__all__ = ["RedisLedger"]


# KEYS: card, request. ARGV: opening balance, opening status, amount, decision_id,
# approval_code, pool, member, request ttl (s). Mirrors `chaos.card_profiles.decide`.
_AUTHORIZE_LUA = """
local prev = redis.call('HMGET', KEYS[2], 'code', 'approval', 'decision', 'pool', 'member')
if prev[1] then
  return {1, prev[1], prev[2], prev[3], prev[4], prev[5]}
end
redis.call('HSETNX', KEYS[1], 'balance', ARGV[1])
redis.call('HSETNX', KEYS[1], 'status', ARGV[2])
local card = redis.call('HMGET', KEYS[1], 'balance', 'status')
local code, approval = '00', ARGV[5]
if card[2] == 'blocked' then code = '05'
elseif card[2] == 'lost' then code = '41'
elseif card[2] == 'stolen' then code = '43'
elseif tonumber(ARGV[3]) > tonumber(card[1]) then code = '51'
end
if code == '00' then
  redis.call('HINCRBY', KEYS[1], 'balance', '-' .. ARGV[3])
else
  approval = ''
end
redis.call('HSET', KEYS[2], 'code', code, 'approval', approval, 'decision', ARGV[4],
           'pool', ARGV[6], 'member', ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[8])
return {0, code, approval, ARGV[4], ARGV[6], ARGV[7]}
"""

# KEYS: card, advice, card's advice order. ARGV: opening balance, opening status,
# approved ('1'/'0'), amount, response code, decision_id. Returns {duplicate, first-arrival µs}.
_ADVISE_LUA = """
local received = redis.call('HINCRBY', KEYS[2], 'received', 1)
if received > 1 then
  return {1, redis.call('HGET', KEYS[2], 'seq')}
end
local t = redis.call('TIME')
local seq = t[1] .. string.format('%06d', tonumber(t[2]))
local applied = '0'
if ARGV[3] == '1' then
  redis.call('HSETNX', KEYS[1], 'balance', ARGV[1])
  redis.call('HSETNX', KEYS[1], 'status', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'balance', '-' .. ARGV[4])
  applied = '1'
end
redis.call('HSET', KEYS[2], 'applied', applied, 'amount', ARGV[4], 'code', ARGV[5], 'seq', seq,
           'request', ARGV[7])
redis.call('RPUSH', KEYS[3], ARGV[6])
return {0, seq}
"""


class RedisLedger:
    """An issuer-wide ledger in Redis, shared by every simulator host given the same URL.

    The advice index (`<prefix>:advices`, a sorted set by first arrival) lies
    outside the card's slot, so it is written after the script, on every call:
    a retried advice repairs an index entry lost to a crash in between.
    """

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "authgw:sim", request_ttl_s: int = 86_400
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._request_ttl_s = request_ttl_s
        self._authorize = client.register_script(_AUTHORIZE_LUA)
        self._advise = client.register_script(_ADVISE_LUA)
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

    def _key(self, token: str, suffix: str) -> str:
        return f"{self._prefix}:{{{token}}}:{suffix}"

    async def authorize(self, attempt: HoldAttempt) -> IssuerAnswer:
        token = card_token(attempt.pan)
        profile = card_profile(attempt.pan)
        keys = [self._key(token, "card"), self._key(token, f"req:{attempt.request_id}")]
        args = [
            profile.balance_minor, profile.status.value, attempt.amount_minor, attempt.decision_id,
            attempt.approval_code, attempt.pool, attempt.member, self._request_ttl_s,
        ]  # fmt: skip
        try:
            repeated, code, approval, decision_id, pool, member = await self._authorize(keys=keys, args=args)
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger authorize failed: {exc}") from exc
        return IssuerAnswer(code, approval, decision_id, pool, member, bool(repeated))

    async def advise(self, advice: AdviceEntry) -> bool:
        token = card_token(advice.pan)
        profile = card_profile(advice.pan)
        keys = [
            self._key(token, "card"),
            self._key(token, f"adv:{advice.decision_id}"),
            self._key(token, "adv-order"),
        ]
        args = [
            profile.balance_minor, profile.status.value, "1" if advice.approved else "0",
            advice.amount_minor, advice.response_code, advice.decision_id, advice.request_id,
        ]  # fmt: skip
        try:
            duplicate, seq = await self._advise(keys=keys, args=args)
            await self._redis.zadd(f"{self._prefix}:advices", {f"{token}:{advice.decision_id}": seq}, nx=True)
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger advise failed: {exc}") from exc
        return bool(duplicate)

    async def advices(self) -> list[AdviceRecord]:
        try:
            members = cast("list[str]", await self._redis.zrange(f"{self._prefix}:advices", 0, -1))
            pipe = self._redis.pipeline(transaction=False)
            for member in members:
                token, _, decision_id = member.partition(":")
                fields = ["received", "applied", "amount", "code", "request"]
                pipe.hmget(self._key(token, f"adv:{decision_id}"), fields)
            rows: list[list[str | None]] = await pipe.execute()
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger report failed: {exc}") from exc
        records = []
        for member, (received, applied, amount, code, request) in zip(members, rows, strict=True):
            records.append(
                AdviceRecord(
                    member.partition(":")[2],
                    int(received or 0),
                    applied == "1",
                    int(amount or 0),
                    code or "",
                    request or "",
                )
            )
        return records

    async def advice_order(self, pan: str) -> list[str]:
        try:
            order = cast(
                "list[str]", await self._redis.lrange(self._key(card_token(pan), "adv-order"), 0, -1)
            )
        except RedisError as exc:
            raise LedgerUnavailable(f"ledger read failed: {exc}") from exc
        return order

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._redis.aclose()
