"""The issuer simulator's accounts: card profiles, holds, advices, idempotency.

Cards are deterministic from the PAN (`card_profile`), so every simulator host
of an issuer, and every test, agrees on a card's opening balance and status
without any set-up. A `Ledger` keeps what happened afterwards: holds by
request_id and posted advices by decision_id, each recorded once.

`MemoryLedger` is one host's private back-end (the default). `RedisLedger` is
an issuer-wide back-end shared by several hosts (all hosts of all pools of one
issuer): idempotency and balances are then issuer-wide. Its Lua scripts touch
only keys tagged with the card's token (`authgw:sim:{<sha256 of PAN>}:…`), so
each runs in one Redis Cluster slot; no PAN is ever written to Redis.

Errors::

    LedgerError                 root of this module's errors
    └── LedgerUnavailable       the back-end cannot be reached in time (retry later)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

__all__ = [
    "LARGE_BALANCE_MINOR",
    "LOW_BALANCE_MINOR",
    "PAN_BLOCKED",
    "PAN_LOST",
    "PAN_LOW_BALANCE",
    "PAN_STOLEN",
    "WELL_KNOWN_TEST_PANS",
    "AdviceEntry",
    "AdviceRecord",
    "CardProfile",
    "CardStatus",
    "HoldAttempt",
    "IssuerAnswer",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "MemoryLedger",
    "RedisLedger",
    "card_profile",
    "card_token",
    "decide",
    "luhn_valid",
]


class LedgerError(Exception):
    """Root of the ledger's errors."""


class LedgerUnavailable(LedgerError):
    """The ledger back-end did not answer in time; nothing can be said about the call."""


class CardStatus(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"  # declined 05 (do not honour)
    LOST = "lost"  # declined 41
    STOLEN = "stolen"  # declined 43


class CardProfile(NamedTuple):
    """Opening state of a card."""

    balance_minor: int
    status: CardStatus


LARGE_BALANCE_MINOR = 10**14  # never exhausted by a benchmark, still exact in Lua's doubles
LOW_BALANCE_MINOR = 10_000  # 100.00

# Public test card numbers: always active with a balance no benchmark exhausts.
WELL_KNOWN_TEST_PANS: frozenset[str] = frozenset({
    "4111111111111111", "4012888888881881", "4242424242424242", "4000056655665556",
    "5555555555554444", "5105105105105100", "2223003122003222", "5200828282828210",
    "378282246310005", "371449635398431", "6011111111111117", "3566002020360505",
    "36227206271667",
})  # fmt: skip

# Luhn-valid PANs with a fixed fate, for tests (numbers borrowed from common test-card lists).
PAN_BLOCKED = "4000000000000002"  # always 05
PAN_LOST = "4000000000009987"  # always 41
PAN_STOLEN = "4000000000009979"  # always 43
PAN_LOW_BALANCE = "4000000000009995"  # active, opens with LOW_BALANCE_MINOR (100.00)

_SPECIAL_CARDS: dict[str, CardProfile] = {
    PAN_BLOCKED: CardProfile(LARGE_BALANCE_MINOR, CardStatus.BLOCKED),
    PAN_LOST: CardProfile(LARGE_BALANCE_MINOR, CardStatus.LOST),
    PAN_STOLEN: CardProfile(LARGE_BALANCE_MINOR, CardStatus.STOLEN),
    PAN_LOW_BALANCE: CardProfile(LOW_BALANCE_MINOR, CardStatus.ACTIVE),
} | {pan: CardProfile(LARGE_BALANCE_MINOR, CardStatus.ACTIVE) for pan in WELL_KNOWN_TEST_PANS}

_MIN_BALANCE_MINOR = 20_000  # 200.00
_MAX_BALANCE_MINOR = 500_000  # 5000.00

_STATUS_CODES = {CardStatus.BLOCKED: "05", CardStatus.LOST: "41", CardStatus.STOLEN: "43"}


def card_profile(pan: str) -> CardProfile:
    """Opening balance and status of a card, from a SHA-256 of its PAN (or the special-card table).

    About 2 % of PANs are blocked, 1 % lost and 1 % stolen; balances are spread
    between 200.00 and 5000.00.
    """
    special = _SPECIAL_CARDS.get(pan)
    if special is not None:
        return special
    digest = hashlib.sha256(b"authgw-sim-profile:" + pan.encode()).digest()
    span = _MAX_BALANCE_MINOR - _MIN_BALANCE_MINOR + 1
    balance = _MIN_BALANCE_MINOR + int.from_bytes(digest[:4], "big") % span
    roll = int.from_bytes(digest[4:6], "big") % 1000
    if roll < 20:
        return CardProfile(balance, CardStatus.BLOCKED)
    if roll < 30:
        return CardProfile(balance, CardStatus.LOST)
    if roll < 40:
        return CardProfile(balance, CardStatus.STOLEN)
    return CardProfile(balance, CardStatus.ACTIVE)


def card_token(pan: str) -> str:
    """The card's key in the ledger: a SHA-256 of the PAN (hex, 128 bits kept)."""
    return hashlib.sha256(pan.encode()).hexdigest()[:32]


def luhn_valid(pan: str) -> bool:
    """True for 12-19 decimal digits passing the Luhn check."""
    if not (12 <= len(pan) <= 19 and pan.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def decide(status: CardStatus, available_minor: int, amount_minor: int) -> str:
    """ISO 8583 response code an issuer gives (mirrored by `_AUTHORIZE_LUA`)."""
    code = _STATUS_CODES.get(status)
    if code is not None:
        return code
    return "51" if amount_minor > available_minor else "00"


@dataclass(frozen=True, slots=True)
class HoldAttempt:
    """An authorization to decide; decision_id and approval_code are used only if request_id is new."""

    request_id: str
    pan: str
    amount_minor: int
    decision_id: str
    approval_code: str
    pool: str
    member: str


@dataclass(frozen=True, slots=True)
class IssuerAnswer:
    """The issuer's answer to a request_id: the first one ever given, whichever host gave it."""

    response_code: str
    approval_code: str  # empty unless response_code is "00"
    decision_id: str
    pool: str
    member: str
    repeated: bool  # the request_id was already known: this is the stored answer


@dataclass(frozen=True, slots=True)
class AdviceEntry:
    """A stand-in decision to post."""

    decision_id: str
    pan: str
    approved: bool
    amount_minor: int
    response_code: str
    request_id: str = ""


@dataclass(slots=True)
class AdviceRecord:
    """What the ledger recorded of one decision_id."""

    decision_id: str
    received: int
    applied: bool
    amount_minor: int
    response_code: str
    request_id: str = ""


class Ledger(Protocol):
    """An issuer back-end: balances, holds by request_id, advices by decision_id."""

    async def authorize(self, attempt: HoldAttempt) -> IssuerAnswer:
        """Decide and hold once per request_id; repeat the stored answer afterwards."""
        ...

    async def advise(self, advice: AdviceEntry) -> bool:
        """Record once per decision_id (debit if approved); True when it was a duplicate."""
        ...

    async def advices(self) -> list[AdviceRecord]:
        """Every advice recorded, in order of first arrival."""
        ...

    async def advice_order(self, pan: str) -> list[str]:
        """decision_ids of one card's advices in order of first arrival."""
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice."""
        ...


@dataclass(slots=True)
class _Card:
    available_minor: int
    status: CardStatus


class MemoryLedger:
    """One host's private ledger; forgets the oldest request_ids past `max_requests`."""

    def __init__(self, *, max_requests: int = 1_000_000) -> None:
        self._max_requests = max_requests
        self._cards: dict[str, _Card] = {}
        self._requests: OrderedDict[tuple[str, str], IssuerAnswer] = OrderedDict()
        self._advices: dict[tuple[str, str], AdviceRecord] = {}
        self._order: dict[str, list[str]] = {}

    def _card(self, token: str, pan: str) -> _Card:
        card = self._cards.get(token)
        if card is None:
            profile = card_profile(pan)
            card = self._cards[token] = _Card(profile.balance_minor, profile.status)
        return card

    async def authorize(self, attempt: HoldAttempt) -> IssuerAnswer:
        token = card_token(attempt.pan)
        key = (token, attempt.request_id)
        known = self._requests.get(key)
        if known is not None:
            return IssuerAnswer(
                known.response_code, known.approval_code, known.decision_id, known.pool, known.member, True
            )
        card = self._card(token, attempt.pan)
        code = decide(card.status, card.available_minor, attempt.amount_minor)
        if code == "00":
            card.available_minor -= attempt.amount_minor
        answer = IssuerAnswer(
            code,
            attempt.approval_code if code == "00" else "",
            attempt.decision_id,
            attempt.pool,
            attempt.member,
            False,
        )
        self._requests[key] = answer
        if len(self._requests) > self._max_requests:
            self._requests.popitem(last=False)
        return answer

    async def advise(self, advice: AdviceEntry) -> bool:
        token = card_token(advice.pan)
        key = (token, advice.decision_id)
        record = self._advices.get(key)
        if record is not None:
            record.received += 1
            return True
        if advice.approved:
            # A stand-in approval is posted whatever the balance: the money has left already.
            self._card(token, advice.pan).available_minor -= advice.amount_minor
        self._advices[key] = AdviceRecord(
            advice.decision_id,
            1,
            advice.approved,
            advice.amount_minor,
            advice.response_code,
            advice.request_id,
        )
        self._order.setdefault(token, []).append(advice.decision_id)
        return False

    async def advices(self) -> list[AdviceRecord]:
        return [
            AdviceRecord(r.decision_id, r.received, r.applied, r.amount_minor, r.response_code, r.request_id)
            for r in self._advices.values()
        ]

    async def advice_order(self, pan: str) -> list[str]:
        return list(self._order.get(card_token(pan), []))

    async def close(self) -> None:
        return None


# KEYS: card, request. ARGV: opening balance, opening status, amount, decision_id,
# approval_code, pool, member, request ttl (s). Mirrors `decide`.
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
