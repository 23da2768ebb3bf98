"""Errors of the stand-in package: one root, expected failures only.

    StandInError                  root: anything stand-in raises on purpose
    ├── ConfigError               a config file, policy or key is invalid (names file, key and fix)
    │   └── PolicyError           the risk policy section is invalid
    ├── InvalidRequestError       a StandInRequest breaks its own invariants (a caller bug)
    ├── CardStatusFileError       an issuer card-status file cannot be parsed (names line)
    ├── StoreUnavailableError     Redis did not answer in time or refused (translated at one boundary)
    ├── LocalJournalError         the local SQLite journal could not record
    ├── EntryFormatError          a journal entry cannot be decoded or its PAN decrypted
    └── ClosedError               the engine is not started, or already closed

Anything else escaping this package is a bug.
"""

from __future__ import annotations

__all__ = [
    "CardStatusFileError",
    "ClosedError",
    "ConfigError",
    "EntryFormatError",
    "InvalidRequestError",
    "LocalJournalError",
    "PolicyError",
    "StandInError",
    "StoreUnavailableError",
]


class StandInError(Exception):
    """Root of every error raised on purpose by the stand-in package."""


class ConfigError(StandInError):
    """Invalid configuration: the message names the file, the key and the fix."""

    def __init__(self, file: str, key: str, problem: str, fix: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"{file}: {key}: {problem}; fix: {fix}")


class PolicyError(ConfigError):
    """Invalid risk policy (limits, MCC groups, tiers)."""


class InvalidRequestError(StandInError, ValueError):
    """A request object breaks its invariants (the gateway edge should have refused it)."""


class CardStatusFileError(StandInError):
    """An issuer card-status file has a bad line."""


class StoreUnavailableError(StandInError):
    """Redis is unreachable, too slow, or refused the command."""


class LocalJournalError(StandInError):
    """The local SQLite journal could not record or read."""


class EntryFormatError(StandInError):
    """A journal entry is malformed, or its encrypted PAN does not authenticate."""


class ClosedError(StandInError):
    """The engine is used before start() or after close()."""
