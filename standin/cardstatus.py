"""Card statuses pushed by the issuer (blocked, lost, stolen), stored in Redis under card tokens.

Each status is written twice in one pipeline: the per-card key the decision script reads,
and the index hash that gateways copy into their local journal (see keys.py).

File formats (one card per line; blank lines and lines starting with # ignored):

    CSV          pan,status          (an optional header line "pan,status")
    JSON lines   {"pan": "...", "status": "..."}

status is blocked, lost, stolen, or active (which removes an earlier status).
Error messages name the line and show a bad value by its type and at most its last four
characters: a PAN written as a JSON number, or in the status column, is never echoed.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from standin.errors import CardStatusFileError, StoreUnavailableError
from standin.keys import CARD_STATUS_INDEX, card_status_key
from standin.redis_io import RedisGate
from standin.tokens import CardTokenizer
from standin.types import CardStatus

__all__ = [
    "CardStatusRecord",
    "LoadReport",
    "fetch_card_statuses",
    "load_card_statuses",
    "read_card_status_file",
]

_PAN = re.compile(r"[0-9]{12,19}")
_DIGITS = re.compile(r"[0-9](?:[ .-]?[0-9]){4,}")  # 5 or more digits, maybe with separators
_STATUSES = ", ".join(s.value for s in CardStatus)


@dataclass(frozen=True, slots=True)
class CardStatusRecord:
    """One line of an issuer card-status file."""

    pan: str = field(repr=False)
    status: CardStatus


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a load changed."""

    set: int
    cleared: int


def read_card_status_file(path: Path) -> Iterator[CardStatusRecord]:
    """Parse a CSV or JSON-lines card-status file, lazily, line by line."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            for number, line in enumerate(f, start=1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                record = _parse_line(path, number, text)
                if record is not None:
                    yield record
    except OSError as exc:
        raise CardStatusFileError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise CardStatusFileError(f"{path}: not UTF-8 text") from exc


def _parse_line(path: Path, number: int, text: str) -> CardStatusRecord | None:
    where = f"{path}:{number}"
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CardStatusFileError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise CardStatusFileError(f"{where}: expected an object with pan and status")
        pan, status = obj.get("pan"), obj.get("status")
    else:
        cells = next(csv.reader([text]))
        if len(cells) != 2:
            raise CardStatusFileError(f"{where}: expected 2 columns pan,status, got {len(cells)}")
        pan, status = (c.strip() for c in cells)
        if number == 1 and pan.lower() == "pan":
            return None  # header
    if not isinstance(pan, str) or not _PAN.fullmatch(pan):
        raise CardStatusFileError(f"{where}: pan {_last_four(pan)} is not a string of 12-19 digits")
    if not isinstance(status, str) or status.lower() not in CardStatus._value2member_map_:
        raise CardStatusFileError(f"{where}: status {_masked(status)} is not one of {_STATUSES}")
    return CardStatusRecord(pan, CardStatus(status.lower()))


def _last_four(value: object) -> str:
    """A bad pan as an error may show it: at most its last four characters (and its type if not text)."""
    text = value if isinstance(value, str) else json.dumps(value)
    shown = f"…{text[-4:]}" if len(text) > 4 else repr(text)  # 4 characters or fewer are no PAN
    return shown if isinstance(value, str) else f"{shown} ({type(value).__name__})"


def _masked(value: object) -> str:
    """A bad status as an error may show it: digit runs (a PAN in the wrong column) cut to their last four."""
    text = value if isinstance(value, str) else json.dumps(value)
    masked = _DIGITS.sub(lambda m: f"…{re.sub(r'[^0-9]', '', m.group())[-4:]}", text)
    return repr(masked[:40])  # masked first: a cut must not leave a PAN's middle digits as "last four"


async def load_card_statuses(
    gate: RedisGate, tokenizer: CardTokenizer, records: Iterable[CardStatusRecord], *, batch: int = 1000
) -> LoadReport:
    """Write statuses to Redis under card tokens (never the PAN), pipelined by `batch`."""
    set_count = cleared = 0
    pending: list[CardStatusRecord] = []

    async def flush() -> None:
        async def op() -> None:
            pipe = gate.redis.pipeline(transaction=False)  # keys live in different slots: no MULTI
            for r in pending:
                token = tokenizer.token(r.pan)
                if r.status is CardStatus.ACTIVE:
                    pipe.delete(card_status_key(token))
                    pipe.hdel(CARD_STATUS_INDEX, token)
                else:
                    pipe.set(card_status_key(token), r.status.value)
                    pipe.hset(CARD_STATUS_INDEX, token, r.status.value)
            await pipe.execute()

        await gate.call("load card status", op)
        pending.clear()

    for record in records:
        pending.append(record)
        if record.status is CardStatus.ACTIVE:
            cleared += 1
        else:
            set_count += 1
        if len(pending) >= batch:
            await flush()
    if pending:
        await flush()
    return LoadReport(set_count, cleared)


async def fetch_card_statuses(gate: RedisGate, *, chunk: int = 1000) -> dict[str, CardStatus]:
    """Every card status in the index (token -> status), read in HSCAN chunks each under the deadline."""
    statuses: dict[str, CardStatus] = {}
    cursor = 0
    while True:

        async def op(cursor: int = cursor) -> tuple[int, Mapping[bytes | str, bytes | str]]:
            next_cursor, page = await gate.redis.hscan(CARD_STATUS_INDEX, cursor, count=chunk)
            if not isinstance(page, Mapping):
                raise StoreUnavailableError(f"redis card status scan: unexpected reply {type(page).__name__}")
            return next_cursor, page

        cursor, page = await gate.call("card status scan", op)
        for token, status in page.items():
            statuses[_text(token)] = CardStatus(_text(status))
        if cursor == 0:
            return statuses


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
