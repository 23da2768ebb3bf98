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

Who sends what, in which order
------------------------------
An issuer posting advices must see one card's advices in decision order. Consumer
groups alone spread a stream's entries over every consumer, so two gateways could
send a card's second advice before its first. Hence one lease per partition
(`SET NX PX`, renewed; lease.py): only its holder reads the partition, so
one card (always in one partition) is only ever in one worker's hands. A worker
takes at most its fair share of partitions (partitions / live workers, from the
heartbeats) and hands the excess over when another worker appears, so N gateways
share the journal when it has N or more partitions. When a holder dies its lease
expires after `lease_ttl`; the next holder first claims every pending entry
(XAUTOCLAIM) and sends those before reading new ones (pending entries are older).
A holder that was frozen past its lease (SIGSTOP, a long pause) stops by itself: it
sends only while its lease surely holds for the advice's whole deadline, and its
late acknowledgements are refused (store.py), leaving them to the new holder.

Inside one batch (dispatch.py), entries are grouped by card: one card's advices
go strictly one after the other (ordered by decision time, which also puts a decision moved late from
a gateway's local journal back in its place within the batch), different cards
concurrently, up to `max_in_flight` in all, paced (pacing.py). A card whose
advice fails (no answer) stops there for this batch: its later advices wait in the
pending list, behind it, for the next round.

Alternatives not taken: a single global worker (simple, but a dead gateway stops all
settlement and one process caps the rate); XREADGROUP without leases (loses per-card
order as soon as two workers read one stream); a lease per card (millions of keys).

Failures
--------
  - no answer (FAILED): the entry stays pending; `pause_after_failures` in a row pause
    settlement (doubling), then one trial advice at a time until one is answered;
  - issuer_healthy() False (pools failed again, stand-in mode): nothing is sent; what is
    in flight finishes, the rest waits;
  - rejected: retried with backoff up to `max_attempts`, then the dead-letter stream, with
    the last error (store.py); POISON (the advice itself is malformed) and entries
    that cannot be decoded go there at once. `authgw standin replay --dead-letters` puts
    them back in the journal once the cause is fixed (deadletter.py). A dead letter
    breaks its card's order (later advices go on without it): the alternative, stopping
    the card for hours, is worse for the issuer's view of the card;
  - Redis unreachable: the worker retries with backoff; its leases lapse and it stops
    sending (it only sends while its lease surely holds for the advice's whole deadline).

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
