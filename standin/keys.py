"""Redis key layout, designed for Redis Cluster.

Every key a card's script touches carries the card token as its hash tag, so the
decision script runs in one slot:

    authgw:{<token>}:status                  string   issuer card status (blocked / lost / stolen)
    authgw:{<token>}:req:<acquirer>:<id>     hash     a request's record: its decision, digest, amounts
    authgw:{<token>}:spend:<kind>            zset     approvals in the window (kind = purchase | cash)
    authgw:{<token>}:rev:<acquirer>:<id>     hash     a reversal's record (idempotency by reversal id)
    authgw:{<token>}:revhold:<acquirer>:<id> string   a reversal that came before its original request
    authgw:{<token>}:unadvised               string   the card's journal entries the issuer has not acked

The acquirer id is digits only, so `<acquirer>:<id>` cannot be confused whatever the
request id holds.

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
    "dead_key",
    "dedupe_key",
    "idempotency_key",
    "partition_of",
    "reversal_hold_key",
    "reversal_key",
    "spend_key",
    "stream_key",
    "unadvised_key",
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
