"""Redis key layout, designed for Redis Cluster.

Every key a card's script touches carries the card token as its hash tag, so the
decision script runs in one slot:

    authgw:{<token>}:status              string   issuer card status (blocked / lost / stolen)
    authgw:{<token>}:req:<request_id>    hash     idempotency record: the decision of that request
    authgw:{<token>}:spend:<kind>        zset     approvals in the window (kind = purchase | cash)

The issuer's card-status list is also mirrored in one hash, read (HSCAN) by every gateway
into its local journal so that card status is still enforced while Redis is down:

    authgw:card-status:index             hash     token -> blocked / lost / stolen

The journal is partitioned by card token into N streams; a stream and the
markers that make appends idempotent share the partition's hash tag:

    authgw:{journal:<p>}:decisions       stream   decisions of the cards of partition p
    authgw:{journal:<p>}:seen:<decision> string   stream id of an appended decision (dedupe, TTL)
"""

from __future__ import annotations

from standin.types import LimitKind

__all__ = [
    "CARD_STATUS_INDEX",
    "card_status_key",
    "dedupe_key",
    "idempotency_key",
    "partition_of",
    "spend_key",
    "stream_key",
]


CARD_STATUS_INDEX = "authgw:card-status:index"


def card_status_key(token: str) -> str:
    return f"authgw:{{{token}}}:status"


def idempotency_key(token: str, request_id: str) -> str:
    # The token's braces come first, so braces inside request_id cannot move the hash slot.
    return f"authgw:{{{token}}}:req:{request_id}"


def spend_key(token: str, kind: LimitKind) -> str:
    return f"authgw:{{{token}}}:spend:{kind.value}"


def partition_of(token: str, partitions: int) -> int:
    """The journal partition of a card: stable, so one card's decisions stay in order in one stream."""
    return int(token[:8], 16) % partitions


def stream_key(partition: int) -> str:
    return f"authgw:{{journal:{partition}}}:decisions"


def dedupe_key(partition: int, decision_id: str) -> str:
    return f"authgw:{{journal:{partition}}}:seen:{decision_id}"
