"""Settlement: stand-in decisions replayed to the issuer as advices, exactly once in effect.

    worker.py      the worker (`Settlement`): heartbeat, one loop per partition held, batches
    partitions.py  which partitions this worker settles (leases, fair share, hand-over)
    lease.py       one partition lease in Redis (SET NX PX, renewed, compare-and-delete)
    dispatch.py    one batch: per-card order, concurrency across cards, pacing, outcomes
    pacing.py      the advice rate (halves on rising latency or errors) and the pause breaker
    store.py       settled records, acknowledgements, dead letters, heartbeats in Redis
    deadletter.py  dead letters: listed and put back in the journal (`standin replay --dead-letters`)
    status.py      `authgw standin status`: where settlement stands, from Redis alone
    reconcile.py   `authgw standin reconcile`: journaled vs acknowledged, by decision id
    advice.py      what an advice is and the `AdviceSender` the gateway injects (gRPC)
    settings.py    `[settlement]` settings
    keys.py        the Redis keys settlement owns

The gateway injects how advices reach issuer hosts (gateway/settlement/sender.py);
nothing here knows gRPC.
"""

from standin.settlement.advice import (
    Advice,
    AdviceSender,
    BacklogSource,
    IssuerHealth,
    SendOutcome,
    SendResult,
)
from standin.settlement.settings import SettlementSettings, load_settlement_settings
from standin.settlement.worker import Settlement, WorkerState

__all__ = [
    "Advice",
    "AdviceSender",
    "BacklogSource",
    "IssuerHealth",
    "SendOutcome",
    "SendResult",
    "Settlement",
    "SettlementSettings",
    "WorkerState",
    "load_settlement_settings",
]
