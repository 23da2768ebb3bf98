"""Errors of the stand-in package: one root, expected failures only.

    StandInError                  root: anything stand-in raises on purpose
    ├── PolicyError               the risk policy section is invalid (also a ConfigError)
    ├── InvalidRequestError       a StandInRequest breaks its own invariants (a caller bug)
    ├── ReusedRequestIdError      the request id was used before for another transaction (refused)
    ├── CardStatusFileError       an issuer card-status file cannot be parsed (names line)
    ├── StoreUnavailableError     Redis did not answer in time or refused (translated at one boundary)
    ├── LocalJournalError         the local SQLite journal could not record
    ├── EntryFormatError          a journal entry cannot be decoded or its PAN decrypted
    │   └── UnknownPanKeyError    its PAN was sealed with a key id this process has not configured
    └── ClosedError               the engine is not started, or already closed

Config files are read by authgw.config: their errors are its ConfigError (names file, key,
problem and fix; re-exported here), PolicyError included. Anything else escaping this
package is a bug.
"""

from __future__ import annotations

from authgw.config import ConfigError

__all__ = [
    "CardStatusFileError",
    "ClosedError",
    "ConfigError",
    "EntryFormatError",
    "InvalidRequestError",
    "LocalJournalError",
    "PolicyError",
    "ReusedRequestIdError",
    "StandInError",
    "StoreUnavailableError",
    "UnknownPanKeyError",
]


class StandInError(Exception):
    """Root of every error raised on purpose by the stand-in package."""


class PolicyError(ConfigError, StandInError):
    """Invalid risk policy (limits, MCC groups, tiers)."""


class InvalidRequestError(StandInError, ValueError):
    """A request object breaks its invariants (the gateway edge should have refused it)."""


class ReusedRequestIdError(StandInError):
    """(acquirer, request id) was decided before for other content: refused, nothing counted or journaled."""


class CardStatusFileError(StandInError):
    """An issuer card-status file has a bad line."""


class StoreUnavailableError(StandInError):
    """Redis is unreachable, too slow, or refused the command.

    `maybe_applied` is True when the command may have run in Redis although its reply was lost
    (a timeout or a connection broken after sending); False when it surely did not (connection
    refused, or Redis refused it).
    """

    def __init__(self, message: str, *, maybe_applied: bool = True) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class LocalJournalError(StandInError):
    """The local SQLite journal could not record or read."""


class EntryFormatError(StandInError):
    """A journal entry is malformed, or its encrypted PAN does not authenticate."""


class UnknownPanKeyError(EntryFormatError):
    """A journal entry's PAN was sealed with a key id that is neither the current nor a retired key.

    The message names the entry and the key id (never the PAN); `key_id` holds the id.
    """

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class ClosedError(StandInError):
    """The engine is used before start() or after close()."""
