"""A PAN leak scanner for tests: more than the last four digits of a known card, in any form.

For each card number the test used, a blob (text or bytes) leaks it when it holds:

    full PAN        every digit in order, each pair maybe split by one separator (space - . / _):
                    4111111111111111, 4111 1111 1111 1111, 4111-1111-1111-1111
    BIN + last four the first six and the last four digits near each other (at most 40 characters
                    apart, in either order) with no other digit run between: 411111******1111,
                    411111XXXXXX1111, "bin": "411111", "last4": "1111"
    BIN             the first six digits starting a number (411111, 41111111...)
    8 digits        any 8 consecutive digits of the PAN, anywhere (pan[4:12], the last eight, ...)
    6-7 digits      a number that is 6 or 7 consecutive digits of the PAN: its middle digits
                    (between BIN and last four) of a 16-digit PAN, its last six or seven, ...;
                    the 5 middle digits of a 15-digit PAN as a number (a 13-digit PAN's 3 middle
                    digits are too few to tell from any other number)
    binary          the PAN as a 64-bit integer, big or little endian, or 48-bit big endian
                    (how SQLite, Redis listpacks and RDB files store numbers)

"A number" is a digit run with no digit or hex letter (a-f) right before it (inside a hex
token, such as a card token or an id, digits are chance) and, for 6-7 digits, no digit
after. The last four alone (…1111) is never a leak. Test PANs must have distinctive digits
(DISTINCT_PANS: BINs not starting with 1 or 2, as timestamps and dates do), so that none
of these patterns occurs by chance: 300 random decoy cards scanned against two runs of
tests/pan_scan_scenario.py matched nothing. Findings never repeat the PAN: they show the
rule, the card's last four and a masked excerpt.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["DISTINCT_PANS", "Finding", "PanScanner"]

# Luhn-valid card numbers of several lengths with distinctive digits (no repeated runs, BINs not
# starting with 1 or 2): what a test scanned with PanScanner sends, so nothing matches by chance.
DISTINCT_PANS = (
    "5371942864879302",
    "6504839173620584158",
    "374829516477833",
    "4983167289407",
    "6395718049369181",
)

_SEP = r"[ \-./_]?"
# Between a BIN and its last four: anything but a digit, or a digit inside a word (the 4 of "last4").
_GAP = r"(?:[^0-9]|(?<=[A-Za-z_])[0-9]){0,40}?"


def _digits(text: str) -> str:
    return _SEP.join(re.escape(c) for c in text)


@dataclass(frozen=True)
class Finding:
    """One leak: where, which rule, which card (by its last four), and a masked excerpt."""

    where: str
    rule: str
    card: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: {self.rule} of card …{self.card}: {self.excerpt}"


@dataclass(frozen=True)
class _Rule:
    name: str
    card: str
    pattern: re.Pattern[str]


def _rules(pan: str) -> list[_Rule]:
    bin6, last4, card = pan[:6], pan[-4:], pan[-4:]
    number = r"(?<![0-9A-Fa-f])"  # not inside a hex token (card tokens, ids) or a longer number
    found: list[tuple[str, str]] = [
        ("full PAN", _digits(pan)),
        ("BIN + last four", rf"{number}{_digits(bin6)}{_GAP}{_digits(last4)}(?!\d)"),
        ("BIN + last four", rf"{number}{_digits(last4)}{_GAP}{_digits(bin6)}"),
        ("BIN", rf"{number}{_digits(bin6)}"),
    ]
    found += [("8 digits of the PAN", _digits(pan[i : i + 8])) for i in range(len(pan) - 7)]
    if len(pan) == 15:  # a 5-digit middle: only as a number of its own
        found.append(("middle digits", rf"{number}{_digits(pan[6:-4])}(?!\d)"))
    for k in (6, 7):
        for i in range(len(pan) - k + 1):
            name = "middle digits" if (i, k) == (6, len(pan) - 10) else f"{k} digits of the PAN"
            found.append((name, rf"{number}{_digits(pan[i : i + k])}(?!\d)"))
    return [_Rule(name, card, re.compile(p, re.DOTALL)) for name, p in found]


def _binary(pan: str) -> list[tuple[str, bytes]]:
    n = int(pan)
    forms = []
    if n < 2**63:
        forms += [
            ("binary int64 big endian", struct.pack(">q", n)),
            ("binary int64 little endian", struct.pack("<q", n)),
        ]
    if n < 2**47:
        forms.append(("binary int48 big endian", n.to_bytes(6, "big")))
    return forms


def _mask(text: str) -> str:
    return re.sub(r"\d", "#", text)


class PanScanner:
    """Scans blobs for the PANs it was given (see the module docstring for what counts)."""

    def __init__(self, pans: Iterable[str]) -> None:
        self.pans: Sequence[str] = tuple(dict.fromkeys(pans))
        self._rules = [r for pan in self.pans for r in _rules(pan)]
        self._binary = [(name, pan[-4:], raw) for pan in self.pans for name, raw in _binary(pan)]

    def scan(self, where: str, blob: str | bytes, *, binary: bool = False) -> list[Finding]:
        """Every leak in `blob` (bytes are read as Latin-1); `binary` also looks for integer encodings."""
        text = blob.decode("latin-1") if isinstance(blob, bytes) else blob
        out = []
        for rule in self._rules:
            m = rule.pattern.search(text)
            if m is not None:
                excerpt = text[max(0, m.start() - 30) : m.end() + 30]
                out.append(
                    Finding(where, rule.name, rule.card, _mask(excerpt).encode("unicode_escape").decode())
                )
        if binary:
            raw = blob if isinstance(blob, bytes) else blob.encode("latin-1", "replace")
            for name, card, encoded in self._binary:
                at = raw.find(encoded)
                if at >= 0:
                    out.append(Finding(where, name, card, f"at byte {at}"))
        return out

    def scan_all(self, blobs: Iterable[tuple[str, str | bytes]], *, binary: bool = False) -> list[Finding]:
        return [f for where, blob in blobs for f in self.scan(where, blob, binary=binary)]
