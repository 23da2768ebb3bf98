"""The Redis Stream journal: what an entry holds, partitions, consumer group, exactly-once appends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import PAN_AMEX, PAN_MC, PAN_VISA
from test_standin_support import (
    PAN_KEY,
    TOKEN_KEY,
    client,
    engine,
    luhn_pan,
    request,
    stream_entries,
)

from standin import (
    EntryFormatError,
    JournalKind,
    JournalSettings,
    PanKeyring,
    Reason,
    decode_decision,
    decode_entry,
    decrypt_pan,
)
from standin.journal import StreamJournal
from standin.keys import partition_of
from standin.redis_io import RedisGate
from standin.tokens import CardTokenizer

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def entries(port: int, partitions: int = 1) -> list[dict[str, str]]:
    r = client(port)
    try:
        return await stream_entries(r, partitions)
    finally:
        await r.aclose()


async def test_approval_is_in_the_stream_before_the_answer(redis_port: int, tmp_path: Path) -> None:
    """When decide() returns an approval, its entry is already in the stream with the decision fields."""
    async with engine(redis_port, tmp_path / "l.db") as e:
        d = await e.decide(request(PAN_VISA), Reason.NO_LIVE_MEMBERS, trace_context=TRACEPARENT)
        [entry] = await entries(redis_port)
    assert decode_decision(entry) == d
    assert (entry["approved"], entry["response_code"], entry["approval_code"]) == ("1", "00", d.approval_code)
    assert (entry["rule"], entry["reason"], entry["journal"]) == ("approved", "NO_LIVE_MEMBERS", "redis")
    assert entry["trace_context"] == TRACEPARENT


async def test_entry_holds_the_request_with_the_pan_encrypted(redis_port: int, tmp_path: Path) -> None:
    """The entry decodes (with the PAN key) to the original request; the PAN field itself is ciphertext."""
    req = request(PAN_VISA, amount_minor=4_242, mcc="5812", merchant_country="FR")
    async with engine(redis_port, tmp_path / "l.db") as e:
        await e.decide(req, Reason.ALL_POOLS_FAILED)
        [entry] = await entries(redis_port)
    assert PAN_VISA not in entry.values() and entry["pan_last4"] == "1111"
    assert decode_entry(entry, PanKeyring.of(PAN_KEY)).request == req
    assert decrypt_pan(entry, PanKeyring.of(PAN_KEY)) == PAN_VISA


async def test_declines_are_journaled_too(redis_port: int, tmp_path: Path) -> None:
    """A declined decision gets its entry (advised for the record, never debited)."""
    async with engine(redis_port, tmp_path / "l.db") as e:
        d = await e.decide(request(PAN_VISA, mcc="7995"), Reason.ALL_POOLS_FAILED)
        [entry] = await entries(redis_port)
    assert (entry["decision_id"], entry["approved"], entry["response_code"]) == (d.decision_id, "0", "57")


async def test_a_repeated_request_adds_no_entry(redis_port: int, tmp_path: Path) -> None:
    """Deciding the same request id twice leaves a single entry."""
    req = request(PAN_VISA)
    async with engine(redis_port, tmp_path / "l.db") as e:
        await e.decide(req, Reason.ALL_POOLS_FAILED)
        await e.decide(req, Reason.ALL_POOLS_FAILED)
    assert len(await entries(redis_port)) == 1


async def test_consumer_group_exists_on_every_partition(redis_port: int, tmp_path: Path) -> None:
    """start() creates the settlement consumer group on each of the N partition streams."""
    async with engine(redis_port, tmp_path / "l.db", journal=JournalSettings(partitions=3)):
        r = client(redis_port)
        groups = [await r.xinfo_groups(f"authgw:{{journal:{p}}}:decisions") for p in range(3)]
        await r.aclose()
    assert [[g["name"] for g in gs] for gs in groups] == [[b"settlement"]] * 3


async def test_partitions_keep_each_card_in_one_stream_in_order(redis_port: int, tmp_path: Path) -> None:
    """With 4 partitions, each card's entries are all in its own partition, in decision order."""
    pans = [PAN_VISA, PAN_MC, PAN_AMEX, *(luhn_pan(f"4{i:07d}") for i in range(5))]
    tokenizer = CardTokenizer(TOKEN_KEY)
    async with engine(redis_port, tmp_path / "l.db", journal=JournalSettings(partitions=4)) as e:
        decided = {
            pan: [(await e.decide(request(pan), Reason.FORCED)).decision_id for _ in range(3)] for pan in pans
        }
    r = client(redis_port)
    for pan, ids in decided.items():
        p = partition_of(tokenizer.token(pan), 4)
        in_partition = [
            f[b"decision_id"].decode() for _, f in await r.xrange(f"authgw:{{journal:{p}}}:decisions")
        ]
        assert [i for i in in_partition if i in ids] == ids
    assert sum([await r.xlen(f"authgw:{{journal:{p}}}:decisions") for p in range(4)]) == 3 * len(pans)
    await r.aclose()


async def test_append_is_idempotent_by_decision_id(redis_port: int) -> None:
    """Appending one decision id twice, even concurrently, stores one entry and returns its id to both."""
    r = client(redis_port)
    journal = StreamJournal(
        RedisGate(r, timedelta(seconds=2)),
        partitions=1,
        consumer_group="settlement",
        dedupe_ttl=timedelta(hours=1),
    )
    results = await asyncio.gather(
        *(journal.append("ab" * 16, "d-1", {"v": "1", "n": str(i)}) for i in range(5))
    )
    length = await r.xlen("authgw:{journal:0}:decisions")
    await r.aclose()
    assert length == 1
    assert len({stream_id for stream_id, _ in results}) == 1
    assert sum(appended for _, appended in results) == 1


async def test_entry_pan_does_not_decrypt_under_another_decision(redis_port: int, tmp_path: Path) -> None:
    """The PAN ciphertext is bound to its decision id: moved to another entry, it fails to decrypt."""
    async with engine(redis_port, tmp_path / "l.db") as e:
        await e.decide(request(PAN_VISA), Reason.FORCED)
        [entry] = await entries(redis_port)
    with pytest.raises(EntryFormatError):
        decrypt_pan({**entry, "decision_id": "0" * 32}, PanKeyring.of(PAN_KEY))


async def test_entry_needs_the_right_pan_key(redis_port: int, tmp_path: Path) -> None:
    """Decoding with another PAN key is refused, naming the key id the entry needs."""
    async with engine(redis_port, tmp_path / "l.db") as e:
        await e.decide(request(PAN_VISA), Reason.FORCED)
        [entry] = await entries(redis_port)
    with pytest.raises(EntryFormatError, match=entry["pan_key_id"]):
        decode_entry(entry, PanKeyring.of(bytes(32)))


async def test_decision_reports_redis_as_its_journal(redis_port: int, tmp_path: Path) -> None:
    """With Redis healthy the decision says it was recorded in Redis."""
    async with engine(redis_port, tmp_path / "l.db") as e:
        d = await e.decide(request(PAN_VISA), Reason.FORCED)
    assert d.journal is JournalKind.REDIS
