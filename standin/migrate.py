"""Moving the local journal to Redis once it is reachable again, each entry exactly once.

For every local entry, oldest first (per-card order kept):

  decision
    1. absorb  (card's slot)      bring it into the fleet state (lua.ABSORB): count it, record it
                                  for its request, unless another decision of the same request wins
                                  (told to the acquirer later, or the same outcome): then that one is
                                  advised instead, its entry built from this one's content (it may
                                  never have been journaled: a DECIDE whose reply was lost);
       budget  (shards' slots)    a local approval that stands is counted in the exposure budgets
                                  it draws on (exposure.py, lua_risk.BUDGET_ABSORB);
    2. append  (partition's slot) XADD to the stream, unless the partition's dedupe marker says this
                                  entry id is already there (marker and XADD in one script);
  reversal
    1. reverse (card's slot)      lua.REVERSE, store mode: applies to the fleet's record of the
                                  original (released from the window), or holds it;
    2. append                     as above: forwarded to the issuer in the card's order;
  append-only (sqlite_rules.APPEND_ONLY: a decision given again, or a reused id's declined advice,
  whose append failed)
    1. count   (card's slot)      one more unadvised entry, unless Redis counted it already;
    2. append                     under its row's dedupe marker (the one its failed append used);
  then
    3. mark    (SQLite)           moved_at + stream id + how, one fsynced transaction per batch.

A crash between 2 and 3 leaves rows unmarked whose entries are in the stream: the
next run appends them again, finds their markers and gets the existing stream
ids back, so nothing is appended twice (as long as the run happens within the
marker TTL, JournalSettings.dedupe_ttl, 72 h by default). A crash between 1 and
2 only repeats an idempotent step.

PAN keys: an entry is moved as it was sealed, under whichever key (current or retired);
settlement opens it with that key. Only a superseded decision's entry is re-sealed (its PAN
is bound to the decision id that wins), which needs the key that sealed it: when that key is
not configured any more (dropped too early), the card's entries stay in the local journal,
logged with the key id, until a restart with the key among the retired ones moves them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from standin.counters import RedisCounters, ReversalKey
from standin.crypto import PanKeyring
from standin.entry import REVERSAL, with_decision
from standin.errors import UnknownPanKeyError
from standin.exposure import ExposureBudgets
from standin.journal import StreamJournal
from standin.sqlite_journal import LocalEntry, SqliteJournal
from standin.sqlite_rules import APPEND_ONLY
from standin.types import JournalKind

__all__ = ["BacklogMover"]

log = logging.getLogger(__name__)


def _iso_ms(ms: int) -> str:
    """An entry's timestamp (entry.py) of epoch milliseconds, as Outcome.decision builds it."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class BacklogMover:
    """Moves local entries to Redis (counters, records, stream)."""

    def __init__(
        self,
        local: SqliteJournal,
        counters: RedisCounters,
        journal: StreamJournal,
        keyring: PanKeyring,
        *,
        batch: int,
        now_ms: Callable[[], int],
        budgets: ExposureBudgets | None = None,
    ) -> None:
        self._local = local
        self._budgets = budgets
        self._counters = counters
        self._journal = journal
        self._keyring = keyring
        self._batch = batch
        self._now_ms = now_ms
        self._stuck: set[str] = set()  # cards with an entry sealed under a PAN key we do not have

    async def move_batch(self, token: str | None = None) -> int:
        """Move up to one batch (of one card when `token` is given); returns how many were moved.

        A card with an entry that cannot be re-sealed is skipped from then on (module docstring).
        Raises StoreUnavailableError or LocalJournalError, after marking what was moved.
        """
        entries = await self._local.pending(self._batch, token, exclude=self._stuck)
        moved: list[tuple[str, str, str]] = []
        try:
            for entry in entries:
                if entry.card_token in self._stuck:
                    continue  # behind an entry of its card that cannot move: keep the card's order
                entry_id = entry.entry_id
                try:
                    stream_id, how = await self._move(entry)
                except UnknownPanKeyError as exc:
                    self._stuck.add(entry.card_token)
                    log.error(  # noqa: TRY400 (the message says it all; a traceback adds nothing)
                        "local entry %s of card %s stays in the local journal: %s", entry_id,
                        entry.card_token[:8], exc,
                    )  # fmt: skip
                    continue
                moved.append((entry_id, stream_id, how))
        finally:
            if moved:
                await self._local.mark_moved(moved, self._now_ms())
        return len(moved)

    async def _move(self, entry: LocalEntry) -> tuple[str, str]:
        """(stream id of what was appended, how the entry was taken)."""
        if entry.entry_kind == REVERSAL:
            return await self._move_reversal(entry)
        if entry.entry_kind == APPEND_ONLY:  # Redis decided it: no ABSORB
            if not entry.counted_in_redis:
                await self._counters.count_unadvised(entry.card_token)  # repeated on a crash: safe side
            decision_id = entry.fields["decision_id"]
            stream_id, _ = await self._journal.append(
                entry.card_token, decision_id, entry.fields, once_per=entry.entry_id
            )
            return stream_id, APPEND_ONLY
        outcome = entry.outcome
        assert outcome is not None  # a decision row always has one
        result = await self._counters.absorb(
            entry.card_token,
            acquirer_id=entry.acquirer_id,
            request_id=entry.request_id,
            digest=entry.digest,
            kind=entry.kind,
            amount_minor=entry.amount_minor,
            txn_amount_minor=entry.txn_amount_minor,
            outcome=outcome,
            now_ms=self._now_ms(),
            lost_call=entry.lost_call,
        )
        fields = entry.fields
        if not result.advise_local:
            assert result.kept is not None
            # Another decision of this request was told to the acquirer last: only it is advised.
            log.warning(
                "request %s of card %s: local decision %s superseded by %s",
                entry.request_id,
                entry.card_token[:8],
                outcome.decision_id,
                result.kept.decision_id,
            )
            kept = result.kept.decision(entry.request_id, JournalKind.REDIS)
            fields = with_decision(entry.fields, kept, self._keyring)
            if result.status == "again":
                # ABSORB moved the kept decision's answered_at to this one's (the same outcome, told
                # later): journaled again, so the issuer learns it was the acquirer's last answer
                fields["again"] = "1"
                once_per = f"{kept.decision_id}@{result.kept.answered_ms}"
                stream_id, _ = await self._journal.append(
                    entry.card_token, kept.decision_id, fields, once_per=once_per
                )
                return stream_id, result.status
        elif self._budgets is not None and result.status != "same" and outcome.response_code.approved:
            # approved here while Redis was away: the fleet's exposure counts it too
            await self._budgets.absorb(entry.card_token, fields, entry.amount_minor, outcome.decided_at_ms)
        if result.answered_ms is not None and result.answered_ms != outcome.answered_ms:
            # replaced the record of a DECIDE whose reply was lost, whose script ran after this
            # decision was answered: the issuer must take this one as the later (lua.ABSORB, told)
            fields = {**fields, "answered_at": _iso_ms(result.answered_ms)}
        stream_id, _ = await self._journal.append(entry.card_token, fields["decision_id"], fields)
        return stream_id, result.status

    async def _move_reversal(self, entry: LocalEntry) -> tuple[str, str]:
        f = entry.fields
        key = ReversalKey(
            f["acquirer_id"], f["reversal_id"], f["original_request_id"], int(f["final_amount_minor"]),
            int(f.get("original_amount_minor") or 0),
        )  # fmt: skip
        status, _, _, released = await self._counters.reverse(
            entry.card_token, key, entry_id=f["decision_id"], store=True
        )
        if released is not None and self._budgets is not None:
            await self._budgets.reversed(entry.card_token, released)
        stream_id, _ = await self._journal.append(entry.card_token, f["decision_id"], f)
        return stream_id, status.value
