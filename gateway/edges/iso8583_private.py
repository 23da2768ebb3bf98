"""Field 48 (additional data, private use) on issuer links: what the contract carries and ISO 8583 does not.

An issuer host that speaks ISO 8583 matches and posts by its own keys (32, 11, 37, 90); the
gateway's contract has more: the acquirer's request id (any printable text, not 32 + 11 + 7),
the decision id of a stand-in advice, the times the issuer's book orders answers and advices
by (`forwarded_at`, `answered_at`). They travel in field 48 as tag-length-value entries:

    TT LLL value        TT: 2 letters; LLL: 3 ASCII digits counting the value's characters

    RI request id          DI decision id (issuer's or stand-in's)   FA forwarded_at (µs, Unix)
    AA answered_at (µs)    OG advice origin (AdviceOrigin number)    CH channel (Channel number)
    VI reversal id         OI original request id                    ST reversal status (number)
    DU 1: a duplicate advice, acknowledged again

A host that does not know field 48 ignores it: it still has every standard field. Field 48 is
pyiso8583's default definition (LLLVAR ans..999); it never carries card data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.edges.iso8583_mapping import MappingError

__all__ = [
    "PRIVATE_FIELD",
    "derived_rrn",
    "format_private",
    "micros",
    "parse_private",
    "timestamp_of",
]

PRIVATE_FIELD = 48
_TAGS = frozenset({"RI", "DI", "FA", "AA", "OG", "CH", "VI", "OI", "ST", "DU"})
_MAX = 999


def format_private(values: Mapping[str, str]) -> str:
    """Field 48 from tags and values (empty values left out); MappingError when it cannot be carried."""
    parts = []
    for tag, value in values.items():
        if tag not in _TAGS:
            raise MappingError("48", f"tag {tag} is not one we define")
        if not value:
            continue
        if len(value) > _MAX or not (value.isascii() and value.isprintable()):
            raise MappingError("48", f"{tag} must be 1 to {_MAX} printable ASCII characters")
        parts.append(f"{tag}{len(value):03d}{value}")
    text = "".join(parts)
    if len(text) > _MAX:
        raise MappingError("48", f"private data is {len(text)} characters, more than {_MAX}")
    return text


def parse_private(text: str) -> dict[str, str]:
    """Field 48 back to tags and values; unknown tags are skipped, a broken entry is a MappingError."""
    values: dict[str, str] = {}
    at = 0
    while at < len(text):
        tag, size = text[at : at + 2], text[at + 2 : at + 5]
        if len(size) != 3 or not size.isdigit():
            raise MappingError("48", f"entry at {at}: a tag and 3 length digits expected")
        end = at + 5 + int(size)
        if end > len(text):
            raise MappingError("48", f"entry {tag} runs past the field")
        if tag in _TAGS:
            values[tag] = text[at + 5 : end]
        at = end
    return values


def derived_rrn(acquirer_id: str, request_id: str) -> str:
    """A retrieval reference number (12 letters and digits) for a request whose acquirer gave none."""
    digest = hashlib.sha256(f"{acquirer_id}\x1f{request_id}".encode()).hexdigest()
    return digest[:12].upper()


def micros(ts: Timestamp) -> str:
    """A timestamp as microseconds since the Unix epoch ("" when unset)."""
    if ts.seconds == 0 and ts.nanos == 0:
        return ""
    return str(ts.seconds * 1_000_000 + ts.nanos // 1000)


def timestamp_of(text: str, field: str) -> Timestamp | None:
    """Microseconds since the epoch back to a timestamp (None when absent)."""
    if not text:
        return None
    if not text.isdigit():
        raise MappingError("48", f"{field} must be microseconds since the Unix epoch")
    ts = Timestamp()
    ts.FromMicroseconds(int(text))
    return ts
