"""Our ISO 8583 spec (1987 field layout) and the one boundary with pyiso8583 (jPOS's packager).

Encodings on the wire:

- MTI: 4 ASCII digits.
- Bitmaps: configurable (`BitmapEncoding`): 16 ASCII hex characters (default, pyiso8583's
  `default_ascii`) or 8 binary bytes (`default`). A secondary bitmap follows the primary one
  when any field 65-128 is present (bit 1 set), in the same encoding.
- Text fields (n, an, ans, z): ASCII, one byte per character. Numeric fields are ASCII
  digits, right-justified and zero-filled to their fixed length (never BCD).
- Binary fields (b: 52 PIN block, 55 ICC data): raw bytes, whatever the bitmap encoding.
- Fixed fields carry no length prefix. LLVAR fields carry 2 ASCII digits, LLLVAR 3 ASCII
  digits, before the data; the prefix counts the data bytes that follow it (characters
  for text, bytes for binary), never itself.

Our fields are declared once in `FIELDS`; the spec handed to pyiso8583 is the library's
`specs.default` (binary PIN block and chip data) with only what ours changes: the bitmap
encoding and field 54's maximum (120, not 240). Fields we do not use keep the library's
definition, so a peer that adds one (say 48) still decodes.
"""

from __future__ import annotations

import copy
import enum
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import iso8583
from iso8583 import specs as library_specs

from authgw.iso8583.errors import FormatError

__all__ = [
    "FIELDS",
    "KEY_FIELDS",
    "BitmapEncoding",
    "FieldDef",
    "Kind",
    "Spec",
]

# Fields a reply is matched by (7 for network management, 37 for financial messages, 11 both).
KEY_FIELDS = (7, 11, 37)

_ANS = frozenset(chr(c) for c in range(0x20, 0x7F))
_TRACK2 = frozenset("0123456789=D")
_HEX = frozenset(string.hexdigits)
_ENVELOPE = {"t": "MTI", "p": "bitmap", "1": "secondary bitmap"}


class Kind(enum.StrEnum):
    """ISO 8583 content types of the fields we use."""

    N = "n"  # ASCII digits
    AN = "an"  # ASCII letters and digits
    ANS = "ans"  # printable ASCII, space included
    Z = "z"  # track 2 characters: digits, '=' or 'D' as separator
    B = "b"  # raw bytes


class BitmapEncoding(enum.StrEnum):
    """How the primary and secondary bitmaps are written."""

    ASCII_HEX = "ascii-hex"  # 16 hex characters per bitmap
    BINARY = "binary"  # 8 bytes per bitmap


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One data element as we use it.

    Args:
        length: the fixed length, or the maximum of a variable field (characters, or bytes for b).
        prefix: 0 for fixed, 2 for LLVAR, 3 for LLLVAR (ASCII digits counting the data bytes).
        layout: a date/time layout the digits must follow (MMDDhhmmss, hhmmss, MMDD, YYMM).
        sensitive: never logged, traced, journaled or advised (track data, PIN block, chip data).
    """

    number: int
    name: str
    kind: Kind
    length: int
    prefix: int = 0
    layout: str | None = None
    sensitive: bool = False

    def problem(self, value: str | bytes) -> str | None:
        """The rule `value` breaks, or None; never quotes the value."""
        if self.kind is Kind.B:
            if not isinstance(value, bytes):
                return "is binary: give bytes"
        elif not isinstance(value, str):
            return f"is {self.kind} text: give str"
        size = len(value)
        if self.prefix == 0 and size != self.length:
            return f"must be exactly {self.length} {self._unit()}, got {size}"
        if self.prefix and not 1 <= size <= self.length:
            return f"must be 1 to {self.length} {self._unit()}, got {size}"
        if isinstance(value, str):
            return self._content_problem(value)
        return None

    def _unit(self) -> str:
        return "bytes" if self.kind is Kind.B else "characters"

    def _content_problem(self, value: str) -> str | None:
        kind = self.kind
        if kind is Kind.N and not (value.isascii() and value.isdigit()):
            return "must be digits only (n)"
        if kind is Kind.AN and not (value.isascii() and value.isalnum()):
            return "must be letters and digits only (an)"
        if kind is Kind.ANS and not _ANS.issuperset(value):
            return "must be printable ASCII (ans)"
        if kind is Kind.Z and not _TRACK2.issuperset(value):
            return "must be track 2 characters: digits and '=' or 'D' (z)"
        if self.layout is not None:
            return _layout_problem(self.layout, value)
        return None


# Upper bounds of each two-digit part of a date/time layout; months and days start at 1.
_PARTS = {"MM": (1, 12), "DD": (1, 31), "hh": (0, 23), "mm": (0, 59), "ss": (0, 59), "YY": (0, 99)}


def _layout_problem(layout: str, digits: str) -> str | None:
    for start in range(0, len(layout), 2):
        part = layout[start : start + 2]
        low, high = _PARTS[part]
        if not low <= int(digits[start : start + 2]) <= high:
            return f"must be a valid {layout} ({part} out of range)"
    return None


FIELDS: tuple[FieldDef, ...] = (
    FieldDef(2, "Primary account number (PAN)", Kind.N, 19, prefix=2),
    FieldDef(3, "Processing code", Kind.N, 6),
    FieldDef(4, "Amount, transaction (minor units)", Kind.N, 12),
    FieldDef(7, "Transmission date and time (UTC)", Kind.N, 10, layout="MMDDhhmmss"),
    FieldDef(11, "System trace audit number (STAN)", Kind.N, 6),
    FieldDef(12, "Time, local transaction", Kind.N, 6, layout="hhmmss"),
    FieldDef(13, "Date, local transaction", Kind.N, 4, layout="MMDD"),
    FieldDef(14, "Date, expiration", Kind.N, 4, layout="YYMM"),
    FieldDef(18, "Merchant category code (MCC)", Kind.N, 4),
    FieldDef(22, "Point-of-service entry mode", Kind.N, 3),
    FieldDef(32, "Acquiring institution identification code", Kind.N, 11, prefix=2),
    FieldDef(35, "Track 2 data", Kind.Z, 37, prefix=2, sensitive=True),
    FieldDef(37, "Retrieval reference number (RRN)", Kind.AN, 12),
    FieldDef(38, "Approval code", Kind.AN, 6),
    FieldDef(39, "Response code", Kind.AN, 2),
    FieldDef(41, "Card acceptor terminal identification", Kind.ANS, 8),
    FieldDef(42, "Card acceptor identification code (merchant id)", Kind.ANS, 15),
    FieldDef(43, "Card acceptor name/location (name 25, city 13, country 2)", Kind.ANS, 40),
    FieldDef(45, "Track 1 data", Kind.ANS, 76, prefix=2, sensitive=True),
    FieldDef(49, "Currency code, transaction (ISO 4217 numeric)", Kind.N, 3),
    FieldDef(52, "PIN block", Kind.B, 8, sensitive=True),
    FieldDef(54, "Additional amounts (20-character entries)", Kind.AN, 120, prefix=3),
    FieldDef(55, "ICC (chip) data", Kind.B, 255, prefix=3, sensitive=True),
    FieldDef(70, "Network management information code", Kind.N, 3),
    FieldDef(90, "Original data elements", Kind.N, 42),
    FieldDef(95, "Replacement amounts", Kind.AN, 42),
)


def _library_entry(fd: FieldDef) -> dict[str, Any]:
    """What pyiso8583 needs to know of one of our fields."""
    return {
        "data_enc": "b" if fd.kind is Kind.B else "ascii",
        "len_enc": "ascii",
        "len_type": fd.prefix,
        "max_len": fd.length,
    }


@dataclass(frozen=True)
class Spec:
    """Our message format with a chosen bitmap encoding; build one per configuration and reuse it."""

    bitmap: BitmapEncoding = BitmapEncoding.ASCII_HEX
    _library: dict[str, dict[str, Any]] = field(init=False, repr=False, compare=False)
    _defs: Mapping[int, FieldDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        library = copy.deepcopy(library_specs.default)
        if self.bitmap is BitmapEncoding.ASCII_HEX:
            for key in ("p", "1"):
                library[key] = copy.deepcopy(library_specs.default_ascii[key])
        for fd in FIELDS:
            library[str(fd.number)].update(_library_entry(fd))
        object.__setattr__(self, "_library", library)
        object.__setattr__(self, "_defs", {fd.number: fd for fd in FIELDS})

    def definition(self, number: int) -> FieldDef | None:
        """Our definition of a field, or None for a field we do not use."""
        return self._defs.get(number)

    def is_binary(self, number: int) -> bool:
        """Whether a field travels as raw bytes (held as `bytes` in a message)."""
        entry = self._library.get(str(number))
        return entry is not None and entry["data_enc"] == "b"

    def library_spec(self) -> Mapping[str, Mapping[str, Any]]:
        """The spec dict handed to pyiso8583 (a copy: tests compare it with the library's)."""
        return copy.deepcopy(self._library)

    def pack(self, mti: str, fields: Mapping[int, str | bytes]) -> bytes:
        """Encode a message whose fields have been checked; FormatError names the field."""
        doc: dict[str, str] = {"t": mti}
        for number, value in fields.items():
            if number == 65 or not 2 <= number <= 128:
                raise FormatError("is not a data field (2-64, 66-128)", field=str(number), mti=mti)
            problem = self._problem(number, value)
            if problem is not None:
                raise FormatError(problem, field=str(number), mti=mti)
            doc[str(number)] = value.hex() if isinstance(value, bytes) else value
        try:
            raw, _ = iso8583.encode(doc, self._library)
        except iso8583.EncodeError as exc:
            # `from None`: the library's error carries the whole document, PAN and PIN block included.
            raise FormatError(exc.msg, field=_ENVELOPE.get(exc.field, exc.field), mti=mti) from None
        return bytes(raw)

    def unpack(self, raw: bytes) -> tuple[str, dict[int, str | bytes]]:
        """Decode and check every field's type and length; FormatError carries what could be read."""
        try:
            doc, enc = iso8583.decode(raw, self._library)
        except iso8583.DecodeError as exc:
            # The library blames the last field for trailing bytes; the frame is what is wrong.
            failed = "frame" if exc.msg.startswith("Extra data") else exc.field
            # `from None`: the library's error carries the raw frame (track data, PIN block).
            raise self._error(exc.msg, failed, exc.doc_dec) from None
        except KeyError:
            # A tertiary bitmap (bit 65) announces fields 129-192, which no 1987 spec defines.
            raise self._error("announces a field beyond 128", "bitmap", {}) from None
        mti = doc["t"]
        if not _is_mti(mti):
            raise self._error("must be 4 digits", "t", doc)
        for key in ("p", "1"):
            if key in doc and not _HEX.issuperset(doc[key]):
                raise self._error("must be hexadecimal", key, doc)
        fields: dict[int, str | bytes] = {}
        for key, text in doc.items():
            if key in _ENVELOPE:
                continue
            number = int(key)
            prefix = enc[key]["len"]
            if prefix and not (prefix.isascii() and prefix.isdigit()):
                raise self._error("length prefix must be ASCII digits", key, doc)
            value: str | bytes = bytes.fromhex(text) if self.is_binary(number) else text
            problem = self._problem(number, value)
            if problem is not None:
                raise self._error(problem, key, doc)
            fields[number] = value
        return mti, fields

    def _problem(self, number: int, value: str | bytes) -> str | None:
        fd = self._defs.get(number)
        if fd is not None:
            return fd.problem(value)
        if isinstance(value, bytes) != self.is_binary(number):
            return "is binary: give bytes" if self.is_binary(number) else "is text: give str"
        return None

    def _error(self, rule: str, failed: str, doc: Mapping[str, str]) -> FormatError:
        """A FormatError with the MTI and the well-formed key fields decoded before the failure."""
        mti = doc.get("t") if failed != "t" else None
        keys = {}
        for number in KEY_FIELDS:
            text = doc.get(str(number))
            if str(number) != failed and text is not None and self._defs[number].problem(text) is None:
                keys[number] = text
        return FormatError(
            rule, field=_ENVELOPE.get(failed, failed), mti=mti if mti and _is_mti(mti) else None, keys=keys
        )


def _is_mti(text: str) -> bool:
    return len(text) == 4 and text.isascii() and text.isdigit()
