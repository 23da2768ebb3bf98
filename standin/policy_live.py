"""The live policy source: the policy a running engine decides with, swapped whole when a new version comes.

    file (standin.toml [policy])  the seed: version 0, used at start and whenever no live
                                  version is published (or etcd cannot be read at start)
    offer(text, version, where)   a published version (etcd's /authgw/standin/policy, read
                                  by the gateway): validated like the file, with errors naming
                                  `where` and the dotted key; valid → it replaces the current
                                  policy at once, invalid → the current one stays (logged,
                                  counted in `rejected`)

A decision reads `current` once, so its limits and the version it records always belong
together; the swap is one attribute assignment on the event loop (nothing half-applied).

Exposure budgets and velocity windows follow the current version too (fleet_risk.py); a
running budget's `shards` cannot change (its reservations live on that many keys: the fix
is a budget of another name).

`window_length` is fixed at start: the Redis counters and the local journal size their
windows and key lifetimes by it. A version with another window_length is refused (the fix
is in the message: change it in the file and restart every gateway). Every other limit
applies to the next decision. A lowered limit applies to a card already above it the
same way a card reaching it would: further approvals are declined (61 / 65, rule
`limit.amount.*` / `limit.count.*`) until the card's approvals in the window fall under
it; nothing already approved is reversed or re-advised.

Nothing here knows etcd: the gateway watches the key and calls offer()/withdraw().
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass

from authgw.config import Section, format_duration
from standin.errors import PolicyError
from standin.policy import StandInPolicy
from standin.policy_load import policy_from_section

__all__ = ["FILE_VERSION", "LivePolicy", "VersionedPolicy", "policy_from_text"]

log = logging.getLogger("authgw.standin.policy")

FILE_VERSION = 0
"""The version every decision made under the seed file records (live versions start at 1)."""


@dataclass(frozen=True, slots=True)
class VersionedPolicy:
    """A policy and the version decisions made under it record."""

    policy: StandInPolicy
    version: int
    source: str
    """Where it came from: the file's path, or the etcd key."""


def policy_from_text(text: str, where: str) -> StandInPolicy:
    """Validate a policy document (TOML whose one table is `[policy]`); PolicyError naming `where`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(where, "-", f"not valid TOML ({exc})", "fix the syntax") from exc
    root = Section(where, "", document, PolicyError)
    root.check_known(["policy"])
    if not root.has("policy"):
        root.fail("policy", "no [policy] table", "put the limits under a [policy] table")
    return policy_from_section(root.table("policy"))


class LivePolicy:
    """The current policy of one engine: the seed file's, or the last valid live version offered."""

    def __init__(self, seed: VersionedPolicy) -> None:
        self.seed = seed
        self.current = seed
        self._text = ""
        self.rejected = 0
        """Live versions refused (invalid, or another window_length): each logged once."""
        self.applied = 0
        """Live versions applied since start."""

    def offer(self, text: str, version: int, where: str) -> bool:
        """Apply `text` as `version` if it is valid; say if applied.

        The key is the truth: whatever valid value it holds is applied, a lower version number
        included (an operator restoring a value); only the value already in use is skipped.
        """
        if (version, text) == (self.current.version, self._text) and self.current is not self.seed:
            return False  # what we hold already (a re-read after the watch broke)
        try:
            policy = policy_from_text(text, where)
            self._check_window(policy, where)
            self._check_shards(policy, where)
        except PolicyError as exc:
            self.refuse(where, f"version {version}: {exc}")
            return False
        self.current = VersionedPolicy(policy, version, where)
        self._text = text
        self.applied += 1
        log.warning("stand-in policy version %d from %s applied", version, where)
        return True

    def refuse(self, where: str, problem: str) -> None:
        """A published value that is not even a policy document (unreadable, bad envelope)."""
        self.rejected += 1
        log.error("stand-in policy at %s refused, keeping version %d: %s", where, self.version, problem)

    def withdraw(self, where: str) -> None:
        """The live key is gone: back to the seed file, as a gateway starting now would be."""
        if self.current is not self.seed:
            log.warning(
                "stand-in policy %s removed: back to the file %s (version 0)", where, self.seed.source
            )
        self.current = self.seed

    @property
    def version(self) -> int:
        return self.current.version

    def _check_window(self, policy: StandInPolicy, where: str) -> None:
        running = self.seed.policy.window
        if policy.window != running:
            raise PolicyError(
                where,
                "policy.window_length",
                f"{format_duration(policy.window)} differs from the running {format_duration(running)}"
                " (the counters' windows are sized at start)",
                f'keep window_length = "{format_duration(running)}"; to change it, change the file'
                " and restart every gateway",
            )

    def _check_shards(self, policy: StandInPolicy, where: str) -> None:
        running = {b.name: b.shards for b in self.current.policy.exposure_budgets}
        for i, budget in enumerate(policy.exposure_budgets):
            shards = running.get(budget.name)
            if shards is not None and budget.shards != shards:
                raise PolicyError(
                    where,
                    f"policy.exposure_budgets[{i}].shards",
                    f"{budget.shards} differs from the running budget {budget.name!r}'s {shards}"
                    " (its reservations live on that many keys)",
                    f"keep shards = {shards}, or give the budget another name",
                )
