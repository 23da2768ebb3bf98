"""Redis keys of settlement, beside the journal (keys.py) and in the same hash slot as its partition.

Everything one settlement script touches shares the partition's hash tag, so each script
runs in one slot on Redis Cluster:

    authgw:{journal:<p>}:decisions         stream  the journal (keys.py); settled entries are deleted
    authgw:{journal:<p>}:settle-lease      string  id of the worker settling partition p (PX, renewed)
    authgw:{journal:<p>}:settled:<day>     hash    decision_id -> what the issuer acknowledged that day
                                                   (day: days since the epoch, UTC), expiring after the
                                                   retention: "outcome|amount_minor|currency|decided_by|
                                                   settled_by|settled_at_ms|how|acquirer:request id"
                                                   (outcome: approved, declined, reversed; how: acked,
                                                   duplicate, already; a reversal's request is its
                                                   original's)
    authgw:{journal:<p>}:settled-counts    hash    "<role>:<gateway>|<approved|declined>|count" and
                                                   "...|<currency>" (amount in minor units); role is
                                                   decider (the gateway that decided) or settler
    authgw:{journal:<p>}:dead              stream  dead letters: the entry's fields plus dead_error,
                                                   dead_attempts, dead_at_ms, dead_from, dead_worker

One key outside the partitions, written by each worker on its own:

    authgw:settle:workers                  hash    worker id -> JSON heartbeat (state, partitions held,
                                                   pacing rate, counters, local backlog)
"""

from __future__ import annotations

from standin.keys import dead_key, stream_key

__all__ = [
    "WORKERS_KEY",
    "counts_key",
    "dead_key",
    "lease_key",
    "settled_key",
    "settled_prefix",
    "stream_key",
]

WORKERS_KEY = "authgw:settle:workers"


def lease_key(partition: int) -> str:
    return f"authgw:{{journal:{partition}}}:settle-lease"


def settled_key(partition: int, day: int) -> str:
    return f"authgw:{{journal:{partition}}}:settled:{day}"


def settled_prefix(partition: int) -> str:
    """What every settled bucket of `partition` starts with (SCAN MATCH <prefix>*)."""
    return f"authgw:{{journal:{partition}}}:settled:"


def counts_key(partition: int) -> str:
    return f"authgw:{{journal:{partition}}}:settled-counts"
