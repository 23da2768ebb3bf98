"""Stand-in configuration: one TOML file (policy, Redis, journal, local fallback) plus secrets.

The `[redis]` section (TLS, ACL users and their password files) is read by redis_config.py.

Secrets are base64 of random bytes, from the environment or files (keyconfig.py):
AUTHGW_TOKEN_KEY (card tokens, >= 32 bytes) and AUTHGW_PAN_KEY (AES-256-GCM, exactly 32 bytes),
plus the retired PAN keys of past rotations. The environment wins over the file; keys inline in
the file are for development only. Relative paths in the file are relative to its directory.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from authgw.config import Section, read_toml
from standin.balances import BalanceSettings
from standin.crypto import PanKeyring
from standin.keyconfig import read_keys
from standin.policy import StandInPolicy
from standin.policy_load import policy_from_section
from standin.redis_config import RedisLogin, RedisRole, RedisSettings, redis_settings

__all__ = [
    "JournalSettings",
    "LocalSettings",
    "RedisLogin",
    "RedisRole",
    "RedisSettings",
    "StandInConfig",
    "load_config",
]

_MS = timedelta(milliseconds=1)
_S = timedelta(seconds=1)
_H = timedelta(hours=1)
_YEAR = timedelta(days=365)


@dataclass(frozen=True)
class JournalSettings:
    """The Redis Stream journal."""

    partitions: int = 1
    """Number of partition streams; a card always maps to the same one (keeps per-card order)."""
    consumer_group: str = "settlement"
    """Consumer group created on every partition for the settlement workers."""
    idempotency_ttl: timedelta = timedelta(hours=48)
    """How long a request_id keeps returning the same decision."""
    dedupe_ttl: timedelta = timedelta(hours=72)
    """How long a decision id is remembered by its partition so it is never appended twice."""
    reversal_hold: timedelta = timedelta(hours=1)
    """How long a reversal whose original is unknown waits for it: an original arriving in stand-in
    within this time is declined (reversal.before_original); the reversal itself is forwarded to
    the issuer at once, which decides for originals it answered."""


@dataclass(frozen=True)
class LocalSettings:
    """The local fallback used while Redis is unreachable."""

    limit_fraction: float = 0.25
    """Fraction of the fleet's cumulative limits one gateway may grant a card on its own."""
    migrate_batch: int = 200
    """Local entries moved to Redis per batch once it is back."""
    migrate_interval: timedelta = timedelta(milliseconds=50)
    """Pause between batches of the backlog, so live decisions keep priority on Redis."""
    card_status_sync: timedelta = timedelta(minutes=5)
    """How often the issuer's card statuses are copied from Redis into the local journal."""


@dataclass(frozen=True)
class StandInConfig:
    """Everything needed to build a StandIn engine."""

    file: str
    instance: str
    """Name of this gateway instance, recorded with every decision."""
    policy: StandInPolicy
    sqlite_path: Path
    """Local SQLite journal (WAL, synchronous=FULL); one file per gateway instance."""
    redis: RedisSettings
    journal: JournalSettings
    local: LocalSettings
    token_key: bytes = field(repr=False)
    pan_key: bytes = field(repr=False)
    """The current PAN key: every new journal entry is sealed with it."""
    retired_pan_keys: tuple[bytes, ...] = field(repr=False, default=())
    """Keys of past rotations: they only open entries sealed before, until those are settled."""
    balance: BalanceSettings = field(default_factory=BalanceSettings)
    """Issuer-reported balances that cap stand-in approvals (standin/balances.py)."""

    def pan_keyring(self) -> PanKeyring:
        return PanKeyring.of(self.pan_key, self.retired_pan_keys)


def load_config(path: Path, env: Mapping[str, str] | None = None) -> StandInConfig:
    """Read the TOML file at `path` and the secrets from `env` (default os.environ)."""
    env = os.environ if env is None else env
    root = read_toml(path)
    root.check_known(["standin", "policy", "redis", "journal", "local", "keys", "balance"])
    base = path.parent
    general = root.table("standin")
    general.check_known(["instance"])
    instance = general.string(
        "instance", "", pattern=r"[A-Za-z0-9._-]{0,64}", fix="use letters, digits, '.', '_' or '-'"
    )
    keys = read_keys(root.table("keys"), env)
    return StandInConfig(
        file=str(path),
        instance=instance or f"{socket.gethostname()}-{os.getpid()}",
        policy=policy_from_section(root.table("policy")),
        redis=redis_settings(root.table("redis")),
        journal=_journal(root.table("journal")),
        sqlite_path=_sqlite_path(root.table("local"), base),
        local=_local(root.table("local")),
        token_key=keys.token_key,
        pan_key=keys.pan_key,
        retired_pan_keys=keys.retired_pan_keys,
        balance=_balance(root.table("balance")),
    )


def _journal(s: Section) -> JournalSettings:
    d = JournalSettings()
    s.check_known(["partitions", "consumer_group", "idempotency_ttl", "dedupe_ttl", "reversal_hold"])
    return JournalSettings(
        partitions=s.integer("partitions", d.partitions, minimum=1, maximum=1024),
        consumer_group=s.string(
            "consumer_group",
            d.consumer_group,
            pattern=r"[A-Za-z0-9._-]{1,64}",
            fix="use letters, digits, . _ -",
        ),
        idempotency_ttl=s.duration("idempotency_ttl", d.idempotency_ttl, minimum=_H, maximum=_YEAR),
        dedupe_ttl=s.duration("dedupe_ttl", d.dedupe_ttl, minimum=_H, maximum=_YEAR),
        reversal_hold=s.duration("reversal_hold", d.reversal_hold, minimum=_S, maximum=_YEAR),
    )


def _balance(s: Section) -> BalanceSettings:
    d = BalanceSettings()
    s.check_known(["ttl", "queue_size"])
    return BalanceSettings(
        ttl=s.duration("ttl", d.ttl, minimum=_S, maximum=_YEAR),
        queue_size=s.integer("queue_size", d.queue_size, minimum=1, maximum=1_000_000),
    )


def _sqlite_path(s: Section, base: Path) -> Path:
    raw = Path(s.string("sqlite_path", "standin.sqlite3"))
    return raw if raw.is_absolute() else base / raw


def _local(s: Section) -> LocalSettings:
    d = LocalSettings()
    s.check_known(["sqlite_path", "limit_fraction", "migrate_batch", "migrate_interval", "card_status_sync"])
    return LocalSettings(
        limit_fraction=s.number("limit_fraction", d.limit_fraction, minimum=0.0, maximum=1.0),
        migrate_batch=s.integer("migrate_batch", d.migrate_batch, minimum=1, maximum=10_000),
        migrate_interval=s.duration(
            "migrate_interval", d.migrate_interval, minimum=10 * _MS, maximum=60 * _S
        ),
        card_status_sync=s.duration("card_status_sync", d.card_status_sync, minimum=_S, maximum=24 * _H),
    )
