"""The money oracle: does the issuer's book of every request end where its acquirer holds it?

The money invariant (DESIGN.md): for every request an acquirer sent, let A be
what the acquirer finally holds the card to: the approved amount of its LAST
answer for that request, reduced by every reversal it sent (0 after a full
reversal, the final amount after a partial one), or 0 if it was declined,
refused, or got no answer (it then sent a timeout reversal). A request sent as
an acquirer advice (a forced post, an offline approval) is money already spent:
A is its amount (reduced by its reversals) whatever the gateway answered, and
it must be posted once, by one approval advice of an acquirer origin
(`advices_posted`). The issuer's book
for that request must end at A, posted once; at most one approval per request
is ever advised. A request is (acquirer_id, request_id) and its content
(`chaos.request_key`), so a request_id reused with other content is another
request, with its own A.

The acquirer's side is what the load generator recorded (`chaos.samples`),
the issuer's side the simulators' books (`IssuerSimControl/Books`). `compare`
puts each request in at most one figure, the first that applies:

    double_posted           the book counts more than one approval advice, or holds more
                            than its latest outcome explains (its own approval and an
                            approval advice not merged); also every posting no request
                            explains: a book holding money for no request of the run, a card
                            whose debits differ from its books (the ledger's own check)
    missing                 A > 0 and the issuer holds nothing
    holds_not_released      A = 0 after no answer (a timeout reversal), the issuer holds money
    reversals_not_applied   an acknowledged reversal says final F, the issuer holds more than F
    holds_not_released      A = 0 after a stand-in decline, the issuer's own hold stayed (no
                            advice decided the book)
    declines_debited        A = 0 after a decline or a refusal, the issuer holds money
    amount_mismatches       any other difference between A and the issuer's book

Every one must be 0, and is judged only once settlement is done: every stand-in
decision the acquirers received advised, every reversal acknowledged and every
one the issuer must see booked (all but a stand-in's NO_EFFECT, which is
recorded nowhere), and the gateways' journals empty (Redis partitions, dead
letters, local backlogs). `verify_settlement` waits (the run's settle phase)
until then; a check taken before (`MoneyCheck.unsettled` not empty) says what
settlement had left, and its figures are no verdict on money.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import grpc
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import simulator_pb2
from chaos.book import own_or_advice
from chaos.request_key import RequestKey
from chaos.reversals import SentReversal
from chaos.samples import Outcome, Sample
from chaos.sim_control import LedgerBooks
from chaos.topology import Topology
from standin.keys import dead_key, stream_key
from standin.settlement.keys import WORKERS_KEY

__all__ = [
    "FIGURES",
    "Figure",
    "Held",
    "MoneyCheck",
    "Why",
    "classify",
    "compare",
    "gateway_backlog",
    "held",
    "journal_backlog",
    "verify_settlement",
]

log = logging.getLogger(__name__)

UNRECORDED_RULE_CODE = "91"  # a stand-in 91 may be unrecorded ("journal.unavailable"): nothing to advise
_EXAMPLES = 5  # request keys kept per failing figure, for the report


class Figure(StrEnum):
    MISSING = "missing"
    DOUBLE_POSTED = "double_posted"
    DECLINES_DEBITED = "declines_debited"
    HOLDS_NOT_RELEASED = "holds_not_released"
    REVERSALS_NOT_APPLIED = "reversals_not_applied"
    AMOUNT_MISMATCHES = "amount_mismatches"


FIGURES: tuple[Figure, ...] = tuple(Figure)


class Why(StrEnum):
    """The acquirer's last outcome for a request."""

    APPROVED = "approved"
    DECLINED = "declined"  # by an issuer
    STANDIN_DECLINED = "standin_declined"  # by the gateway itself (stand-in, or its own 91)
    REFUSED = "refused"
    NO_ANSWER = "no_answer"
    ADVISED = "advised"  # an acquirer advice: approved by the acquirer itself, whatever the gateway said


@dataclass(frozen=True, slots=True)
class Held:
    """What an acquirer finally holds the card to for one request."""

    key: RequestKey
    amount_minor: int  # A
    why: Why
    acked_final_minor: int | None = None  # lowest final amount among its acknowledged reversals


def held(sample: Sample) -> Held:
    """A for one sample: its last answer's approved amount (an advice's amount), capped by every reversal."""
    why = Why.NO_ANSWER
    if sample.advice:
        why = Why.ADVISED
    elif sample.last_outcome == Outcome.REFUSED:
        why = Why.REFUSED
    elif sample.last_outcome == Outcome.ANSWERED and sample.answers:
        last = sample.answers[-1]
        if last.approved:
            why = Why.APPROVED
        else:
            why = Why.STANDIN_DECLINED if last.source == "STAND_IN" else Why.DECLINED
    amount = sample.amount_minor if why in (Why.APPROVED, Why.ADVISED) else 0
    amount = min([amount, *(r.final_amount_minor for r in sample.reversals)])
    acked = [r.final_amount_minor for r in sample.reversals if r.acked]
    key = RequestKey(sample.acquirer_id, sample.request_id, sample.digest)
    return Held(key, amount, why, min(acked) if acked else None)


def explained_minor(book: simulator_pb2.RequestBook) -> int:
    """What one posting explains: the issuer's rule (`chaos.book.own_or_advice`), capped by reversals."""
    latest = None
    if book.advices:
        latest = max(enumerate(book.advices), key=lambda pair: (pair[1].answered_at_us, pair[0]))[1]
    base = own_or_advice(book.own.held_minor, book.own.forwarded_at_us, latest)
    return min([base, *(r.final_amount_minor for r in book.reversals)])


def classify(acquirer: Held, book: simulator_pb2.RequestBook | None) -> Figure | None:
    """The figure one request counts in, or None when the issuer's book ends at A, posted once."""
    issuer = book.final_minor if book is not None else 0
    if book is not None and (book.approval_advices > 1 or issuer > explained_minor(book)):
        return Figure.DOUBLE_POSTED
    a = acquirer.amount_minor
    if a == issuer:
        return None
    if a > 0 and issuer == 0:
        return Figure.MISSING
    if a == 0 and acquirer.why is Why.NO_ANSWER:
        return Figure.HOLDS_NOT_RELEASED
    if acquirer.acked_final_minor is not None and issuer > acquirer.acked_final_minor:
        return Figure.REVERSALS_NOT_APPLIED
    if a == 0 and acquirer.why is Why.STANDIN_DECLINED and book is not None and not book.advices:
        return Figure.HOLDS_NOT_RELEASED
    if a == 0 and acquirer.why in (Why.DECLINED, Why.STANDIN_DECLINED, Why.REFUSED):
        return Figure.DECLINES_DEBITED
    return Figure.AMOUNT_MISMATCHES


def story(sample: Sample, book: simulator_pb2.RequestBook | None) -> str:
    """One request's money, both sides, on one line (a failing figure's example in the report):
    what the acquirer sent and heard, and what the issuer booked."""
    heard = [
        f"{a.response_code} {a.source}{' ' + a.rule if a.rule else ''} {a.decision_id[:8]} @{a.at_s:.2f}s"
        for a in sample.answers
    ]
    reversed_ = [
        f"{r.reversal_id} to {r.final_amount_minor}{' acked ' + r.status if r.acked else ' unacked'}"
        for r in sample.reversals
    ]
    acquirer = (
        f"acquirer: {sample.amount_minor} sent {sample.sends}x{' (advice)' if sample.advice else ''}"
        f"{' (reused id)' if sample.reused else ''}{' (cancelled)' if sample.cancelled else ''}, "
        f"heard [{'; '.join(heard)}], reversed [{'; '.join(reversed_)}]"
    )
    if book is None:
        return acquirer + " | issuer: no book"
    own = f"own {book.own.response_code} held {book.own.held_minor}" if book.own.arrived else "own none"
    advised = [
        f"{a.response_code} {a.decision_id[:8]} @{a.answered_at_us}us x{a.received}" for a in book.advices
    ]
    capped = [f"{r.reversal_id} to {r.final_amount_minor}" for r in book.reversals]
    return (
        f"{acquirer} | issuer: {own} (forwarded @{book.own.forwarded_at_us}us), "
        f"advices [{'; '.join(advised)}], reversals [{'; '.join(capped)}], final {book.final_minor}"
    )


@dataclass(frozen=True, slots=True)
class MoneyCheck:
    requests: int  # requests the acquirers sent (each content of a request_id counts once)
    books: int  # request books the issuer keeps
    missing: int
    double_posted: int
    declines_debited: int
    holds_not_released: int
    reversals_not_applied: int
    amount_mismatches: int
    unexplained_postings: int  # of double_posted: books of no request of the run, cards off their books
    # Books of no request of the run whose request_id and content are a request's under another
    # acquirer_id (an advice or a forward that lost or changed acquirer_id): a hint, not a figure.
    misfiled_books: int
    journaled: int  # stand-in decisions the acquirers received (each journaled before it was answered)
    advised: int  # of those, advices the issuer booked
    redelivered: int  # advices that arrived more than once (harmless: the issuer deduplicates)
    reversals_sent: int
    reversals_acked: int
    reversals_applied: int  # booked by the issuer: applied, held for their original, or of no effect
    waited_s: float
    advices: int = 0  # requests the acquirers sent as acquirer advices (A = their amount)
    advices_acked: int = 0  # of those, acknowledged by a gateway
    advices_posted: int = 0  # of those, books holding one approval advice of an acquirer origin
    examples: dict[str, list[str]] = field(default_factory=dict)  # failing figure -> a few requests
    gateway_backlog: int | None = 0  # entries the gateways' journals hold (-1: unreadable, None: not read)
    # What settlement had left when this check was taken (empty: done, the figures are a verdict).
    unsettled: tuple[str, ...] = ()

    def figures(self) -> dict[str, int]:
        """The six figures the invariant needs at 0."""
        return {f.value: getattr(self, f.value) for f in FIGURES}

    @property
    def settled(self) -> bool:
        return not self.unsettled

    @property
    def ok(self) -> bool:
        return self.settled and not any(self.figures().values())

    def as_dict(self) -> dict[str, object]:
        """The check as a report shows it: before settlement was done, the figures are None (no verdict)."""
        doc = asdict(self)
        doc["settled"] = self.settled
        if not self.settled:
            doc.update(dict.fromkeys(self.figures()))
        return doc


def compare(
    samples: Sequence[Sample],
    books: Sequence[simulator_pb2.RequestBook],
    unexplained: simulator_pb2.UnexplainedPostings | None = None,
    waited_s: float = 0.0,
    gateway_backlog: int | None = 0,
) -> MoneyCheck:
    """What every acquirer holds against the issuer's book of the same request.

    gateway_backlog: entries the gateways' journals still hold (-1: unreadable, counted as unsettled;
    None: not read, as on a Redis Cluster, where settlement is judged by the acquirers' side alone).
    """
    by_key = {RequestKey(b.acquirer_id, b.request_id, b.digest): b for b in books}
    of_key = {RequestKey(s.acquirer_id, s.request_id, s.digest): s for s in samples}
    helds = {h.key: h for h in map(held, samples)}
    counts: Counter[Figure] = Counter()
    examples: dict[str, list[str]] = {}
    for key, acquirer in helds.items():
        figure = classify(acquirer, by_key.get(key))
        if figure is not None:
            counts[figure] += 1
            examples.setdefault(figure.value, [])
            if len(examples[figure.value]) < _EXAMPLES:
                examples[figure.value].append(f"{key}: {story(of_key[key], by_key.get(key))}")
    unknown = [k for k in by_key if k not in helds]
    stray = [k for k in unknown if by_key[k].final_minor > 0]
    known_content = {(k.request_id, k.digest) for k in helds}
    unexplained_postings = len(stray) + (unexplained.cards if unexplained is not None else 0)
    if stray:
        examples.setdefault(Figure.DOUBLE_POSTED.value, []).extend(
            f"{k} (no such request)" for k in stray[:2]
        )
    booked_advices = {a.decision_id: a for b in books for a in b.advices}
    journaled = _journaled(samples)
    sent = [r for s in samples for r in s.reversals]
    booked_reversals = {r.reversal_id for b in books for r in b.reversals}
    advised = sum(1 for d in journaled if d in booked_advices)
    unsettled = _unsettled(len(journaled), advised, sent, booked_reversals, gateway_backlog)
    return MoneyCheck(
        requests=len(helds),
        books=len(books),
        missing=counts[Figure.MISSING],
        double_posted=counts[Figure.DOUBLE_POSTED] + unexplained_postings,
        declines_debited=counts[Figure.DECLINES_DEBITED],
        holds_not_released=counts[Figure.HOLDS_NOT_RELEASED],
        reversals_not_applied=counts[Figure.REVERSALS_NOT_APPLIED],
        amount_mismatches=counts[Figure.AMOUNT_MISMATCHES],
        unexplained_postings=unexplained_postings,
        misfiled_books=sum(1 for k in unknown if (k.request_id, k.digest) in known_content),
        journaled=len(journaled),
        advised=advised,
        redelivered=sum(a.received - 1 for a in booked_advices.values() if a.received > 1),
        reversals_sent=len(sent),
        reversals_acked=sum(1 for r in sent if r.acked),
        reversals_applied=sum(1 for r in sent if r.reversal_id in booked_reversals),
        waited_s=round(waited_s, 1),
        **_advice_counts(samples, by_key),
        examples=examples,
        gateway_backlog=gateway_backlog,
        unsettled=unsettled,
    )


def _unsettled(
    journaled: int,
    advised: int,
    sent: Sequence[SentReversal],
    booked: set[str],
    gateway_backlog: int | None,
) -> tuple[str, ...]:
    """What settlement has yet to do: advices, reversals to acknowledge or book, journal entries.

    Decisions not advised are waited for only while the journals may still hold them: once the
    gateways' journals are read empty, settlement has nothing left to send (a decision superseded at
    migration, or one the issuer refused, is never advised), and the money figures judge the rest."""
    left = []
    if advised < journaled and gateway_backlog != 0:
        left.append(f"stand-in decisions advised {advised}/{journaled}")
    acked = [r for r in sent if r.acked]
    if len(acked) < len(sent):
        left.append(f"reversals acknowledged {len(acked)}/{len(sent)}")
    # A stand-in's NO_EFFECT may be recorded nowhere (already reversed as low); one of a decline is
    # forwarded, but the gateways' journals read empty say it was (gateway_backlog below).
    due = [r for r in acked if not (r.source == "STAND_IN" and r.status == "NO_EFFECT")]
    due_booked = sum(1 for r in due if r.reversal_id in booked)
    if due_booked < len(due):
        left.append(f"acknowledged reversals booked by the issuer {due_booked}/{len(due)}")
    if gateway_backlog is not None and gateway_backlog < 0:
        left.append("gateway journals unreadable")
    elif gateway_backlog:
        left.append(f"gateway journal entries {gateway_backlog}")
    return tuple(left)


_ACQUIRER_ORIGINS = frozenset({pb.ACQUIRER_FORCED_POST, pb.ACQUIRER_OFFLINE})


def _advice_counts(
    samples: Sequence[Sample], by_key: dict[RequestKey, simulator_pb2.RequestBook]
) -> dict[str, int]:
    """advices, advices_acked, advices_posted (see MoneyCheck)."""
    advices = [s for s in samples if s.advice]
    posted = 0
    for s in advices:
        book = by_key.get(RequestKey(s.acquirer_id, s.request_id, s.digest))
        origins = [a.origin for a in book.advices if a.approved] if book is not None else []
        posted += len(origins) == 1 and origins[0] in _ACQUIRER_ORIGINS
    acked = sum(1 for s in advices if s.answers)
    return {"advices": len(advices), "advices_acked": acked, "advices_posted": posted}


def _journaled(samples: Iterable[Sample]) -> set[str]:
    """decision_ids stand-in had to record and settlement must advise: per request, the last stand-in
    answer (or acquirer advice) its acquirer received. An earlier answer under another decision id
    (decided on a local journal, or a 91 after a lost reply) is superseded at migration by the one
    told last, and only that one is advised (lua.ABSORB; the IssuerHost contract)."""
    journaled = set()
    for s in samples:  # one request: (acquirer_id, request_id) and one content
        recorded = [
            a.decision_id
            for a in s.answers
            if a.source in ("STAND_IN", "ACQUIRER")
            and a.decision_id
            and (a.approved or a.response_code != UNRECORDED_RULE_CODE)
        ]
        if recorded:
            journaled.add(recorded[-1])
    return journaled


async def issuer_books(topo: Topology) -> LedgerBooks | None:
    """Every book of the issuer's shared ledger (asked of any live simulator); None if none answers."""
    for member, sim in topo.sims.items():
        if not sim.alive():
            continue
        try:
            async with topo.sim_control(member) as ctl:
                return await ctl.books(timeout_s=60.0)
        except grpc.aio.AioRpcError:
            continue  # a hung or dying simulator: ask the next one
    return None


_BACKLOG_HEARTBEAT_MS = 10_000  # a worker's local backlog counts if its heartbeat is this recent


async def journal_backlog(redis: Redis) -> int:
    """Entries the gateways still have to settle, read from their Redis: journal partitions and dead
    letters, and the local backlog of each settlement worker whose heartbeat is recent."""
    left = 0
    partitions = set()
    async for key in redis.scan_iter(match="authgw:{journal:*}:decisions", count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        partitions.add(int(name.split("{journal:", 1)[1].split("}", 1)[0]))
    for p in partitions:
        left += int(await redis.xlen(stream_key(p))) + int(await redis.xlen(dead_key(p)))
    now_ms = time.time() * 1000
    for raw in (await redis.hgetall(WORKERS_KEY)).values():
        beat = json.loads(raw)
        if now_ms - float(beat.get("updated_ms", 0)) <= _BACKLOG_HEARTBEAT_MS:
            left += int(beat.get("local_backlog") or 0)
    return left


async def gateway_backlog(topo: Topology) -> int | None:
    """`journal_backlog` of the topology's gateways: 0 without stand-in, -1 when it cannot be read.

    On a Redis Cluster (partitions on several nodes) it is not read: None, and settlement is judged
    by the acquirers' side alone (advised, reversals acknowledged and booked)."""
    if topo.spec.redis_cluster:
        return None
    if topo.redis is None:
        return 0
    client = topo.redis_admin()
    try:
        return await journal_backlog(client)
    except (RedisError, ValueError) as exc:
        log.warning("gateway journals unreadable: %s", exc)
        return -1
    finally:
        await client.aclose()


async def verify_settlement(
    topo: Topology, samples: Sequence[Sample], timeout_s: float, console: Console
) -> MoneyCheck:
    """Wait until settlement is done (`MoneyCheck.unsettled` empty on two reads in a row, a second
    apart: a worker's heartbeat lags), then compare; at timeout_s, the last check, unsettled."""
    started = time.monotonic()
    console.log(f"settling: waiting until settlement is done for {len(samples)} requests")
    done_once = False
    check = compare(samples, [], None, 0.0, -1)
    while True:
        ledger = await issuer_books(topo)
        backlog = await gateway_backlog(topo)
        waited = time.monotonic() - started
        if ledger is not None:
            check = compare(samples, ledger.books, ledger.unexplained, waited, backlog)
            if check.settled and done_once:
                return check
            done_once = check.settled
        if waited > timeout_s:
            if not check.settled:
                console.log(f"settlement not done after {waited:.0f} s: {'; '.join(check.unsettled)}")
            return check
        await asyncio.sleep(1.0)
