"""Admission control: refuse the authorizations one process cannot answer in time, at once.

Past its capacity a gateway that accepts everything queues everything: every
answer comes late, many after the client's deadline. Instead, authorizations in
flight are capped by an adaptive concurrency limit and the excess is refused
with RESOURCE_EXHAUSTED, which a fleet client retries on another gateway (the
one case where a valid request gets no decision, README "Overload").

The limit is AIMD, as Netflix's concurrency-limits `AIMDLimit` and the idea of
Envoy's adaptive concurrency filter, with one change of signal: it follows the
event loop's lag, not the requests' latency. A request's latency includes the
issuer's, and a hung pool (400 ms attempts, then stand-in) makes every request
slow while the gateway is idle: a latency-driven limit would shrink then and
refuse exactly the traffic stand-in exists for. The loop's lag only grows when
this process has more work than CPU. Every `sample_interval`:

- lag above `lag_target`: limit x `backoff` (not below `min_limit`);
- otherwise, if the limit was at least half used since the last sample:
  limit + `increase` (not above `max_limit`).

Only Authorize is limited. Reverse and the acquirer's Advise release money or
record what was done, and health checks tell the fleet where to send traffic:
none of them is refused while capacity is merely tight; like everything else
they meet only grpc's own cap (`hard_limit`, grpc's `maximum_concurrent_rpcs`,
refused in grpc's Cython layer before any of our code runs), set far above
the adaptive range. Stand-in decisions are authorizations and settlement is
not an RPC: settlement keeps running; stand-in answers what is admitted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from authgw.config import Section
from authgw.tasks import cancel_and_wait

__all__ = ["AdaptiveLimit", "AdmissionConfig", "LoopLagSampler", "admission_config"]

log = logging.getLogger("authgw.admission")

_MS = timedelta(milliseconds=1)
_LOG_EVERY_S = 5.0  # at most one overload warning per this many seconds


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """[admission]: the adaptive concurrency limit of authorizations."""

    # Off unless configured: see the README ("Overload"); grpc's hard_limit applies either way.
    enabled: bool = False
    # The floor must hold what an outage needs in flight: requests wait on a hung pool's attempt
    # timeouts before failover (rate x ~0.8 s: 240 at 300/s). Below it, a loop slowed by a noisy
    # neighbour refused outage traffic (chaos-total-outage at 300/s on a machine at load 15:
    # thousands refused with a floor of 32, hundreds with 500).
    initial_limit: int = 500  # authorizations in flight admitted at start
    min_limit: int = 500  # never below (lower it only knowing the rate x attempt timeouts)
    max_limit: int = 5000  # never above
    lag_target: timedelta = 50 * _MS  # event-loop lag above which the limit shrinks
    sample_interval: timedelta = 25 * _MS  # how often the loop's lag is sampled
    backoff: float = 0.8  # multiplicative decrease per sample over lag_target
    increase: int = 2  # additive increase per sample under lag_target with the limit half used
    hard_limit: int = 10000  # grpc maximum_concurrent_rpcs, every method; 0: none

    @property
    def lag_target_s(self) -> float:
        return self.lag_target / timedelta(seconds=1)

    @property
    def sample_interval_s(self) -> float:
        return self.sample_interval / timedelta(seconds=1)


def admission_config(s: Section) -> AdmissionConfig:
    """Read [admission] (every key optional); errors name the key and the fix."""
    s.check_known({f.name for f in AdmissionConfig.__dataclass_fields__.values()})
    d = AdmissionConfig()
    min_limit = s.integer("min_limit", d.min_limit, minimum=1)
    max_limit = s.integer("max_limit", d.max_limit, minimum=min_limit)
    cfg = AdmissionConfig(
        enabled=s.boolean("enabled", d.enabled),
        initial_limit=s.integer("initial_limit", d.initial_limit, minimum=min_limit, maximum=max_limit),
        min_limit=min_limit,
        max_limit=max_limit,
        lag_target=s.duration("lag_target", d.lag_target, minimum=_MS),
        sample_interval=s.duration("sample_interval", d.sample_interval, minimum=_MS, maximum=1000 * _MS),
        backoff=s.number("backoff", d.backoff, minimum=0.1, maximum=0.99),
        increase=s.integer("increase", d.increase, minimum=1),
        hard_limit=s.integer("hard_limit", d.hard_limit, minimum=0),
    )
    if cfg.enabled and cfg.hard_limit and cfg.hard_limit <= cfg.max_limit:
        s.fail("hard_limit", f"{cfg.hard_limit} is not above max_limit ({cfg.max_limit})", "raise it or 0")
    return cfg


class AdaptiveLimit:
    """The AIMD limit and the count of authorizations it admitted and refused (no clock: fed samples)."""

    def __init__(self, cfg: AdmissionConfig) -> None:
        self._cfg = cfg
        self.limit = float(cfg.initial_limit)
        self.in_flight = 0
        self.refused = 0
        self._peak = 0  # most in flight since the last sample

    def try_acquire(self) -> bool:
        """Admit one authorization (then `release` it) or count a refusal."""
        if self.in_flight >= int(self.limit):
            self.refused += 1
            return False
        self.in_flight += 1
        self._peak = max(self._peak, self.in_flight)
        return True

    def release(self) -> None:
        self.in_flight -= 1

    def on_lag(self, lag_s: float) -> None:
        """One sample of the event loop's lag: shrink when late, grow when on time and used."""
        cfg = self._cfg
        if lag_s > cfg.lag_target_s:
            self.limit = max(float(cfg.min_limit), self.limit * cfg.backoff)
        elif 2 * self._peak >= self.limit:
            self.limit = min(float(cfg.max_limit), self.limit + cfg.increase)
        self._peak = self.in_flight


class LoopLagSampler:
    """Measures how late the event loop runs a timer, every sample_interval, and feeds the limit."""

    def __init__(self, limit: AdaptiveLimit, interval_s: float) -> None:
        self._limit = limit
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.last_lag_s = 0.0
        self._logged_refused = 0
        self._logged_at = 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="admission-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self.last_lag_s = max(0.0, loop.time() - due)
            self._limit.on_lag(self.last_lag_s)
            self._warn(loop.time())

    def _warn(self, now: float) -> None:
        """One warning per _LOG_EVERY_S while authorizations are being refused."""
        refused = self._limit.refused - self._logged_refused
        if refused and now - self._logged_at >= _LOG_EVERY_S:
            log.warning(
                "overload: %d authorizations refused RESOURCE_EXHAUSTED since the last warning "
                "(limit %d in flight, event-loop lag %.0f ms)",
                refused,
                int(self._limit.limit),
                self.last_lag_s * 1000.0,
            )
            self._logged_refused, self._logged_at = self._limit.refused, now

    async def close(self) -> None:
        """Stop sampling; safe to call twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
