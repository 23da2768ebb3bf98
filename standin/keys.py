"""Redis key layout, designed for Redis Cluster.

Every key a card's script touches carries the card token as its hash tag, so the
decision script runs in one slot:

    authgw:{<token>}:status                  string   issuer card status (blocked / lost / stolen)
    authgw:{<token>}:req:<acquirer>:<id>     hash     a request's record: its decision, digest, amounts
    authgw:{<token>}:spend:<kind>            zset     approvals in the window (kind = purchase | cash)
    authgw:{<token>}:rev:<acquirer>:<id>     hash     a reversal's record (idempotency by reversal id)
    authgw:{<token>}:revhold:<acquirer>:<id> string   a reversal that came before its original request
    authgw:{<token>}:unadvised               string   the card's journal entries the issuer has not acked
    authgw:{<token>}:balance                 hash     the issuer's last available balance: available,
                                                      currency, at_ms, spent (stand-in approvals since)

The acquirer id is digits only, so `<acquirer>:<id>` cannot be confused whatever the
request id holds.

The issuer's card-status list is also mirrored in one hash, read (HSCAN) by every gateway
into its local journal so that card status is still enforced while Redis is down:

    authgw:card-status:index             hash     token -> blocked / lost / stolen

The journal is partitioned by card token into N streams; a stream and the
markers that make appends idempotent share the partition's hash tag:

    authgw:{journal:<p>}:decisions       stream   decisions of the cards of partition p
    authgw:{journal:<p>}:seen:<decision> string   stream id of an appended decision (dedupe, TTL)

Fleet-wide keys that cannot carry a card's tag have their own (DESIGN.md "Scaling out"): an
exposure budget is split into N shards, each its own slot (a card reserves on the shard its
token picks), and a merchant's velocity windows share the merchant's slot with its terminals':

    authgw:{budget:<name>:<s>}:spend     zset     approvals of shard s in the period, <decision>:<amount>
    authgw:{budget:<name>:<s>}:sum       string   their total (kept with the set, so a reserve is O(1))
    authgw:{vel:<merchant>}:m:<channel>            zset    the merchant's requests, <request>:<amount>
    authgw:{vel:<merchant>}:m:<channel>:sum        string  their total amount
    authgw:{vel:<merchant>}:t:<terminal>:<channel> zset    the terminal's (and :sum)

<merchant> and <terminal> are short digests of (acquirer, merchant id[, terminal id]): free
text from the acquirer never reaches a key name or moves a slot.
"""

from __future__ import annotations

import hashlib

from standin.types import Channel, LimitKind

__all__ = [
    "CARD_STATUS_INDEX",
    "balance_key",
    "budget_keys",
    "budget_shard_of",
    "card_status_key",
    "dead_key",
    "dedupe_key",
    "idempotency_key",
    "merchant_velocity_keys",
    "partition_of",
    "reversal_hold_key",
    "reversal_key",
    "spend_key",
    "stream_key",
    "terminal_velocity_keys",
    "unadvised_key",
    "velocity_tag",
]


CARD_STATUS_INDEX = "authgw:card-status:index"


def card_status_key(token: str) -> str:
    return f"authgw:{{{token}}}:status"


def idempotency_key(token: str, acquirer_id: str, request_id: str) -> str:
    # The token's braces come first, so braces inside request_id cannot move the hash slot.
    return f"authgw:{{{token}}}:req:{acquirer_id}:{request_id}"


def reversal_key(token: str, acquirer_id: str, reversal_id: str) -> str:
    return f"authgw:{{{token}}}:rev:{acquirer_id}:{reversal_id}"


def reversal_hold_key(token: str, acquirer_id: str, request_id: str) -> str:
    return f"authgw:{{{token}}}:revhold:{acquirer_id}:{request_id}"


def unadvised_key(token: str) -> str:
    return f"authgw:{{{token}}}:unadvised"


def balance_key(token: str) -> str:
    return f"authgw:{{{token}}}:balance"


def spend_key(token: str, kind: LimitKind) -> str:
    return f"authgw:{{{token}}}:spend:{kind.value}"


def partition_of(token: str, partitions: int) -> int:
    """The journal partition of a card: stable, so one card's decisions stay in order in one stream."""
    return int(token[:8], 16) % partitions


def stream_key(partition: int) -> str:
    return f"authgw:{{journal:{partition}}}:decisions"


def dead_key(partition: int) -> str:
    """Dead letters of partition p (settlement gave up on them for now; see standin/settlement)."""
    return f"authgw:{{journal:{partition}}}:dead"


def dedupe_key(partition: int, decision_id: str) -> str:
    return f"authgw:{{journal:{partition}}}:seen:{decision_id}"


def budget_shard_of(token: str, shards: int) -> int:
    """The budget shard a card reserves on first (its token spreads cards evenly)."""
    return int(token[-8:], 16) % shards


def budget_keys(name: str, shard: int) -> tuple[str, str]:
    """(spend set, sum) of one shard of a budget: one slot."""
    base = f"authgw:{{budget:{name}:{shard}}}"
    return f"{base}:spend", f"{base}:sum"


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=12).hexdigest()


def velocity_tag(acquirer_id: str, merchant_id: str) -> str:
    """The hash tag of a merchant's velocity windows (its terminals' share it)."""
    return f"authgw:{{vel:{_digest(acquirer_id, merchant_id)}}}"


def merchant_velocity_keys(tag: str, channel: Channel) -> tuple[str, str]:
    return f"{tag}:m:{channel.value}", f"{tag}:m:{channel.value}:sum"


def terminal_velocity_keys(tag: str, terminal_id: str, channel: Channel) -> tuple[str, str]:
    base = f"{tag}:t:{_digest(terminal_id)}:{channel.value}"
    return base, f"{base}:sum"
