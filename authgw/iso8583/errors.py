"""Errors of the ISO 8583 wire layer: one root, expected failures only.

    Iso8583Error                  root: anything this package raises on purpose
    ├── ConfigError               a framing, spec or mux setting is invalid (names the key and the fix)
    ├── FramingError              bad, empty or oversized length header, bad TPDU, short read:
    │                             the stream is out of step, close that connection (only that one)
    ├── FormatError               a message does not decode, lacks a mandatory field or has a bad
    │                             value; carries `mti` and the matching `keys` that could be read,
    │                             so a listener can still answer 30 (format error)
    ├── ConnectionClosed          the peer closed or reset the connection, or it was closed here;
    │                             `request_sent` says whether a pending request reached the wire
    └── MuxError                  a request could not be matched to a reply (key already in flight,
        │                         mux not started)
        └── MatchTimeout          no reply matched within the request's timeout

pyiso8583's errors are translated in one place (`spec.Spec.unpack`/`pack`), socket errors
where they enter (`channel`, `framing`). Anything else escaping this package is a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "ConfigError",
    "ConnectionClosed",
    "FormatError",
    "FramingError",
    "Iso8583Error",
    "MatchTimeout",
    "MuxError",
]


class Iso8583Error(Exception):
    """Root of every error raised on purpose by the ISO 8583 wire layer."""


class ConfigError(Iso8583Error, ValueError):
    """An invalid setting: the message names the key, the problem and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"{key}: {problem}; fix: {fix}")


class FramingError(Iso8583Error):
    """The byte stream is not a sequence of well-formed frames; the connection cannot be trusted."""


class FormatError(Iso8583Error):
    """A message breaks the format; names the field and the rule, never a field's value.

    Args:
        rule: what is wrong, e.g. "must be 6 digits".
        field: the field number as text ("11"), or "MTI", "bitmap", "frame" for the envelope.
        mti: the message type when it could be read.
        keys: well-formed matching fields (7, 11, 37) that could be read, by field number.
    """

    def __init__(
        self,
        rule: str,
        *,
        field: str | None = None,
        mti: str | None = None,
        keys: Mapping[int, str] | None = None,
    ) -> None:
        self.rule = rule
        self.field = field
        self.mti = mti
        self.keys: Mapping[int, str] = MappingProxyType(dict(keys or {}))
        where = f"field {field}: " if field else ""
        super().__init__(f"{mti or 'message'}: {where}{rule}")


class ConnectionClosed(Iso8583Error):
    """The connection is gone; `request_sent` is False when the request never reached the wire."""

    def __init__(self, reason: str, *, request_sent: bool = False) -> None:
        self.reason = reason
        self.request_sent = request_sent
        super().__init__(reason)


class MuxError(Iso8583Error):
    """A request cannot be multiplexed: its key is already in flight, or the mux is not started."""


class MatchTimeout(MuxError):
    """No reply matched the request within its timeout (it may still reach the issuer)."""
