"""Settlement settings: the `[settlement]` table of the gateway's config file.

Every value shown is the default; a file only needs what it changes::

    [settlement]
    enabled = true                 # run a settlement worker inside this gateway
    rate_per_s = 500               # advices per second at most, per worker
    min_rate_per_s = 10            # back-off floor
    latency_target = "250ms"       # a pacing window whose mean advice latency is above this halves the rate
    error_threshold = 0.05         # ... and so does one whose share of failed advices is above this
    pacing_window = "500ms"        # how often the rate is reconsidered (it grows back by 10 % of the max)
    max_in_flight = 64             # advices awaiting an answer at once, all partitions together
    batch = 256                    # journal entries read per partition at a time
    advise_timeout = "2s"          # deadline of one IssuerHost/Advise call
    max_attempts = 5               # issuer rejections before an advice goes to the dead letters
    retry_backoff = "200ms"        # pause after the first rejection, doubling after each
    pause_after_failures = 5       # consecutive failed advices (no answer) that pause settlement
    pause = "1s"                   # first pause, doubling up to pause_max while trials fail
    pause_max = "10s"
    lease_ttl = "10s"              # a partition's lease; a dead worker's partitions move after this
    block = "500ms"                # wait for new journal entries this long per read
    heartbeat = "2s"               # how often the worker publishes its state (authgw standin status)
    redis_deadline = "2s"          # deadline of one settlement Redis call (not the decision path's)
    settled_retention = "8d"       # settled records kept; must outlive any local journal still to move
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from authgw.config import Section

__all__ = ["SettlementSettings", "load_settlement_settings"]


@dataclass(frozen=True)
class SettlementSettings:
    """How one settlement worker paces, retries and shares the journal with the others."""

    enabled: bool = True
    """Run a worker inside the gateway (`authgw settle` runs one regardless)."""
    rate_per_s: float = 500.0
    """Most advices per second this worker sends (the ceiling the pacer grows back to)."""
    min_rate_per_s: float = 10.0
    """The pacer never backs off below this."""
    latency_target: timedelta = timedelta(milliseconds=250)
    """Mean advice latency in a pacing window above which the rate is halved."""
    error_threshold: float = 0.05
    """Share of failed advices in a pacing window above which the rate is halved."""
    pacing_window: timedelta = timedelta(milliseconds=500)
    """How often the pacer reconsiders the rate."""
    max_in_flight: int = 64
    """Advices awaiting the issuer's answer at once."""
    batch: int = 256
    """Journal entries read from a partition at a time."""
    advise_timeout: timedelta = timedelta(seconds=2)
    """Deadline of one IssuerHost/Advise call."""
    max_attempts: int = 5
    """Issuer rejections of one advice before it moves to the dead-letter stream."""
    retry_backoff: timedelta = timedelta(milliseconds=200)
    """Pause after a rejection, doubled after each further one."""
    pause_after_failures: int = 5
    """Consecutive failed advices (no answer from the issuer) that pause settlement."""
    pause: timedelta = timedelta(seconds=1)
    """First pause; doubled while the trial after a pause fails."""
    pause_max: timedelta = timedelta(seconds=10)
    """Longest pause."""
    lease_ttl: timedelta = timedelta(seconds=10)
    """Lease of a partition: another worker takes over a dead worker's partitions after this."""
    block: timedelta = timedelta(milliseconds=500)
    """How long one read waits for new journal entries."""
    heartbeat: timedelta = timedelta(seconds=2)
    """How often the worker publishes its state for `authgw standin status`."""
    redis_deadline: timedelta = timedelta(seconds=2)
    """Deadline of one settlement Redis call (settlement is not on the authorization's clock)."""
    settled_retention: timedelta = timedelta(days=8)
    """How long the record of a settled decision is kept (one hash per day). It must outlive any
    local journal that may still be moved to Redis (a host that was down for days): an entry
    moved later than this after its settlement would be advised again (the issuer dedupes it)."""

    def __post_init__(self) -> None:
        if self.advise_timeout >= self.lease_ttl / 2:
            raise ValueError(
                "advise_timeout must be under half of lease_ttl (a send must end within a lease)"
            )
        if self.block >= self.redis_deadline:
            raise ValueError("block must be shorter than redis_deadline")
        if self.min_rate_per_s > self.rate_per_s:
            raise ValueError("min_rate_per_s must not exceed rate_per_s")


def load_settlement_settings(s: Section) -> SettlementSettings:
    """Validate the `[settlement]` table; ConfigError names the key and the fix."""
    d = SettlementSettings()
    s.check_known(
        [
            "enabled", "rate_per_s", "min_rate_per_s", "latency_target", "error_threshold",
            "pacing_window", "max_in_flight", "batch", "advise_timeout", "max_attempts",
            "retry_backoff", "pause_after_failures", "pause", "pause_max", "lease_ttl",
            "block", "heartbeat", "redis_deadline", "settled_retention",
        ]
    )  # fmt: skip
    ms = timedelta(milliseconds=1)
    try:
        return SettlementSettings(
            enabled=s.boolean("enabled", d.enabled),
            rate_per_s=s.number("rate_per_s", d.rate_per_s, minimum=1.0, maximum=1_000_000.0),
            min_rate_per_s=s.number("min_rate_per_s", d.min_rate_per_s, minimum=0.1, maximum=1_000_000.0),
            latency_target=s.duration("latency_target", d.latency_target, minimum=ms),
            error_threshold=s.number("error_threshold", d.error_threshold, minimum=0.0, maximum=1.0),
            pacing_window=s.duration("pacing_window", d.pacing_window, minimum=10 * ms),
            max_in_flight=s.integer("max_in_flight", d.max_in_flight, minimum=1, maximum=10_000),
            batch=s.integer("batch", d.batch, minimum=1, maximum=10_000),
            advise_timeout=s.duration("advise_timeout", d.advise_timeout, minimum=10 * ms),
            max_attempts=s.integer("max_attempts", d.max_attempts, minimum=1, maximum=100),
            retry_backoff=s.duration("retry_backoff", d.retry_backoff),
            pause_after_failures=s.integer("pause_after_failures", d.pause_after_failures, minimum=1),
            pause=s.duration("pause", d.pause, minimum=10 * ms),
            pause_max=s.duration("pause_max", d.pause_max, minimum=10 * ms),
            lease_ttl=s.duration("lease_ttl", d.lease_ttl, minimum=100 * ms),
            block=s.duration("block", d.block, minimum=ms),
            heartbeat=s.duration("heartbeat", d.heartbeat, minimum=10 * ms),
            redis_deadline=s.duration("redis_deadline", d.redis_deadline, minimum=10 * ms),
            settled_retention=s.duration(
                "settled_retention",
                d.settled_retention,
                minimum=timedelta(days=1),
                maximum=timedelta(days=366),
            ),
        )
    except ValueError as exc:
        s.fail("", str(exc), "adjust the values named")
