"""The router: spends one request's deadline across pools by priority.

Inside a pool it picks a member by power of two choices; a failed attempt moves
on (another member after a connection refused, the next pool otherwise), every
retry uses the same request_id (issuer hosts are idempotent on it), retries are
capped by the retry budget, and a reserve of the deadline is always kept for
stand-in. The router never raises for issuer failures: it returns a RouteResult
saying what answered, or why nothing did.

Given a tracer, each attempt runs in its own client span and carries the W3C
trace context to the issuer host; an attempt that ejects its member adds an
`authgw.member.ejected` event to the authorization's span. Counters of attempts,
retries and ejections are plain Counters that metrics read when they collect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace

from authgw.codes import ResponseCode
from authgw.v1 import authorization_pb2 as pb
from gateway.attempt import AUTHORIZE, Attempt, AttemptKind, LateAnswers, Method, run_attempt
from gateway.config import GatewayConfig
from gateway.edges.iso8583_issuer import IsoLinks
from gateway.member import Connect, Member, plaintext_channel
from gateway.pool import MemberSpec, Pool
from gateway.pool_health import Outcome, PoolVerdict
from gateway.retry_budget import RetryBudget
from gateway.tracing import DECLINE_STORM_EVENT, EJECTED_EVENT, FAILOVER_EVENT, traced_attempt
from standin.types import Reason

__all__ = ["PoolSpec", "RouteResult", "Router"]

_DO_NOT_HONOUR = ResponseCode.DO_NOT_HONOUR.value

# Below this, an attempt could not get an answer back in time: stop trying.
_MIN_ATTEMPT_S = 0.02
# Of a short budget, the share kept for stand-in (the configured reserve caps it).
_RESERVE_SHARE = 0.25


class AttemptFn(Protocol):
    """run_attempt, or traced_attempt bound to a tracer."""

    async def __call__(
        self,
        member: Member,
        request: Any,
        *,
        timeout_s: float,
        late: LateAnswers,
        late_window_s: float,
        metadata: tuple[tuple[str, str], ...],
        method: Method,
    ) -> Attempt: ...


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One pool as membership sees it."""

    members: tuple[MemberSpec, ...]
    drained: bool = False


@dataclass(slots=True)
class RouteResult:
    """The answer an issuer gave, or why there was none, and every attempt made."""

    response: Any = None  # AuthorizeResponse or ReverseResponse (by the method routed)
    cause: Reason | None = None  # why no issuer answered, when neither response nor refused
    refused: Attempt | None = None  # an issuer refused the request for good (ALREADY_EXISTS)
    attempts: list[Attempt] = field(default_factory=list)
    budget_exhausted: bool = False

    @property
    def maybe_reached_issuer(self) -> bool:
        """Some attempt may have been processed by an issuer whose answer the gateway did not get."""
        return any(a.kind.maybe_reached_issuer for a in self.attempts)


@dataclass(slots=True)
class _Route:
    """One request's way through the pools."""

    request: Any
    method: Method
    metadata: tuple[tuple[str, str], ...]
    stop_at: float  # the deadline minus the stand-in reserve
    client_bound: bool
    tried: set[Member] = field(default_factory=set)
    result: RouteResult = field(default_factory=RouteResult)
    out_of_time: bool = False


def _outcome(attempt: Attempt) -> Outcome:
    if attempt.kind is AttemptKind.REFUSED:
        return Outcome.GOOD
    if attempt.kind is AttemptKind.ANSWERED:
        assert attempt.response is not None
        code = getattr(attempt.response, "response_code", "")
        return Outcome.DECLINE_05 if code == _DO_NOT_HONOUR else Outcome.GOOD
    if attempt.kind is AttemptKind.SYSTEM_DECLINE:
        return Outcome.SYSTEM_DECLINE
    return Outcome.ERROR


class Router:
    """Holds the pools and routes requests through them."""

    def __init__(
        self,
        cfg: GatewayConfig,
        clock: Callable[[], float] = time.monotonic,
        *,
        tracer: trace.Tracer | None = None,
        connect: Callable[[str], Connect] | None = None,
        iso: Callable[[str], IsoLinks] | None = None,
    ) -> None:
        """Args:
        connect: pool name -> how its members' channels are opened (TLS, the pool's server name);
            default plaintext.
        iso: pool name -> how its ISO 8583 members' connections are opened; default plaintext
            with the pool's `[pools.iso8583]` settings.
        """
        settings = {p.name: p.iso8583 for p in cfg.pools}
        self._iso = iso or (lambda pool: IsoLinks(settings.get(pool)))
        self._cfg = cfg
        self._clock = clock
        self._tracer = tracer
        self._connect = connect or (lambda _pool: plaintext_channel)
        # chosen once: the traced attempt wraps the same call in a client span
        self._attempt: AttemptFn = (
            run_attempt if tracer is None else functools.partial(traced_attempt, tracer)
        )
        self._late_window_s = cfg.routing.late_answer_window_s
        self._reserve_s = cfg.routing.standin_reserve_s
        self._priority = {p.name: p.priority for p in cfg.pools}
        self._timeouts = {p.name: p.attempt_timeout_s for p in cfg.pools}
        self.pools: list[Pool] = []
        self.budget = RetryBudget(cfg.routing.retry_budget_ratio, cfg.routing.retry_budget_min)
        self.late = LateAnswers()
        self.attempts: Counter[tuple[str, str]] = Counter()  # (pool, AttemptKind value) -> count
        self.retries: Counter[tuple[str, str]] = Counter()  # (pool, previous attempt's kind) -> count
        self.ejections: Counter[str] = Counter()  # pool -> members ejected so far
        self._retired: list[Member] = []
        self.apply(
            {
                p.name: PoolSpec(
                    tuple(MemberSpec(m.name, m.address, m.weight, m.protocol) for m in p.members)
                )
                for p in cfg.pools
            }
        )

    def apply(self, membership: Mapping[str, PoolSpec]) -> None:
        """Apply a full membership view: pools and members not in it leave routing."""
        by_name = {p.name: p for p in self.pools}
        pools = []
        for name, spec in membership.items():
            pool = by_name.pop(name, None)
            if pool is None:
                pool = Pool(
                    name,
                    self._priority.get(name, 1000),
                    self._timeouts.get(name, self._cfg.routing.attempt_timeout_s),
                    self._cfg.outlier,
                    self._cfg.decline_storm,
                    connect=self._connect(name),
                    iso=self._iso(name),
                    on_ejected=lambda member: self.ejections.update([member.pool]),
                    clock=self._clock,
                )
            pool.drained = spec.drained
            self._retired += pool.set_members(spec.members)
            pools.append(pool)
        for gone in by_name.values():
            self._retired += gone.set_members(())
        self.pools = sorted(pools, key=lambda p: (p.priority, p.name))

    async def reconnect(self, connect: Callable[[str], Connect]) -> None:
        """Open every member's channel anew (a rotated client certificate); in-flight calls finish."""
        self._connect = connect
        for pool in self.pools:
            pool.connect = connect(pool.name)
        await asyncio.gather(*(m.reconnect(p.connect) for p in self.pools for m in list(p.members.values())))

    async def close_retired(self) -> None:
        """Close channels of members that left (called off the hot path)."""
        retired, self._retired = self._retired, []
        for member in retired:
            await member.close()

    async def close(self) -> None:
        await self.late.close()
        await self.close_retired()
        for pool in self.pools:
            for member in pool.members.values():
                await member.close()

    def restore(self, members: list[Member]) -> None:
        """Give probed-healthy members, and their pools, a clean slate (leaving stand-in mode)."""
        pools = {m.pool for m in members}
        for pool in self.pools:
            if pool.name in pools:
                pool.health.reset()
        for member in members:
            member.ejection.reset()

    def has_healthy_pool(self, now: float | None = None) -> bool:
        """Is some pool in routing with a healthy verdict and a usable member (trials do not count)?"""
        now = self._clock() if now is None else now
        return any(not p.drained and p.health.verdict is PoolVerdict.OK and p.usable(now) for p in self.pools)

    async def route(
        self,
        request: Any,
        deadline: float,
        metadata: tuple[tuple[str, str], ...] = (),
        *,
        client_bound: bool = False,
        method: Method = AUTHORIZE,
    ) -> RouteResult:
        """Try pools until one answers, refuses, or only the stand-in reserve of `deadline` is left.

        Args:
            client_bound: `deadline` is the client's (shorter than the gateway's own): an attempt
                it cuts short that times out says nothing about the issuer, and counts against
                neither the member nor its pool.
            method: Authorize, or Reverse (idempotent too: retried the same way).
        """
        now = self._clock()
        # The reserve shrinks with a short budget: a 160 ms deadline to a healthy pool gets the issuer.
        reserve = min(self._reserve_s, max(0.0, deadline - now) * _RESERVE_SHARE)
        route = _Route(request, method, metadata, deadline - reserve, client_bound)
        storms = skipped = considered = 0
        failover = False  # the previous pool was judged failing: moving on is failover, not a retry
        self.budget.request_started()
        try:
            for pool in self.pools:
                considered += 1
                now = self._clock()
                if pool.drained or not pool.health.admits(now):
                    skipped += 1
                    storms += pool.health.verdict is PoolVerdict.DECLINE_STORM
                    continue
                if considered > 1 and self._tracer is not None:  # before the attempt, whose traceparent
                    self._passed_over(considered - 1)  # then says sampled under tail sampling
                pool.health.on_pick(now)
                answered = await self._try_pool(pool, route, failover=failover)
                failover = pool.health.verdict is not PoolVerdict.OK
                no_time = route.stop_at - self._clock() < _MIN_ATTEMPT_S
                route.out_of_time = route.out_of_time or no_time
                if answered or route.result.budget_exhausted or no_time:
                    break
        finally:
            self.budget.request_finished()
        result = route.result
        if storms and self._tracer is not None:
            trace.get_current_span().add_event(DECLINE_STORM_EVENT, {"authgw.pools_in_storm": storms})
        if result.response is None and result.refused is None:
            result.cause = self._cause(route, storms, skipped)
        return result

    async def _try_pool(self, pool: Pool, route: _Route, *, failover: bool) -> bool:
        result = route.result
        while True:
            now = self._clock()
            member = pool.pick(now, route.tried)
            if member is None:
                pool.health.on_abandon()
                return False
            left = route.stop_at - now
            # A retry after a refused connection costs the issuer nothing, and moving on from a pool
            # judged failing is what a new request would do anyway (the failing pool gets no more):
            # only other retries, after an attempt that may have reached an issuer, draw on the budget.
            is_retry = not failover and bool(result.attempts)
            is_retry = is_retry and result.attempts[-1].kind is not AttemptKind.NOT_SENT
            failover = False
            if left < _MIN_ATTEMPT_S or (is_retry and not self.budget.try_acquire()):
                member.ejection.on_abandon()
                pool.health.on_abandon()
                result.budget_exhausted = left >= _MIN_ATTEMPT_S
                route.out_of_time = route.out_of_time or left < _MIN_ATTEMPT_S
                return False
            route.tried.add(member)
            if result.attempts:
                self.retries[pool.name, result.attempts[-1].kind.value] += 1
            try:
                attempt = await self._attempt(
                    member,
                    route.request,
                    timeout_s=min(pool.attempt_timeout_s, left),
                    late=self.late,
                    late_window_s=self._late_window_s,
                    metadata=route.metadata,
                    method=route.method,
                )
            finally:
                if is_retry:
                    self.budget.release()
            if left < pool.attempt_timeout_s:
                attempt = dataclasses.replace(attempt, cut_short=True)
            if self._record(pool, member, attempt, route):
                return True
            if attempt.kind is not AttemptKind.NOT_SENT:
                return False  # unknown outcome or a sick pool: the next pool, same request_id

    def _record(self, pool: Pool, member: Member, attempt: Attempt, route: _Route) -> bool:
        """Count one attempt in its member's and pool's health; True when an issuer answered or refused."""
        result = route.result
        result.attempts.append(attempt)
        self.attempts[pool.name, attempt.kind.value] += 1
        now = self._clock()
        if route.client_bound and attempt.cut_short and attempt.kind is AttemptKind.TIMEOUT:
            return False  # the client's own deadline, not the issuer: counts against neither
        pool.health.record(now, _outcome(attempt))
        if attempt.kind is AttemptKind.REFUSED:
            member.ejection.on_success(now)  # it answered: a reused request id, refused for good
            result.refused = attempt
            return True
        if attempt.kind is AttemptKind.ANSWERED:
            member.ejection.on_success(now)
            response = attempt.response
            assert response is not None
            # what answered is the gateway's fact: an issuer may echo a stored answer of another host
            if isinstance(response, pb.AuthorizeResponse):
                response.pool = member.pool
                response.member = member.name
            response.source = pb.ISSUER
            result.response = response
            return True
        if member.ejection.on_failure(now, pool.may_eject(now)):
            self._ejected(member, attempt, now)
        return False

    @staticmethod
    def _passed_over(pools: int) -> None:
        """An event on the authorization's span: pools passed over (failing, ejected, drained)."""
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(FAILOVER_EVENT, {"authgw.failover.pools_passed": pools})

    def _ejected(self, member: Member, attempt: Attempt, now: float) -> None:
        self.ejections[member.pool] += 1
        if self._tracer is None:
            return
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                EJECTED_EVENT,
                {
                    "authgw.pool": member.pool,
                    "authgw.member": member.name,
                    "authgw.attempt.outcome": attempt.kind.value,
                    "authgw.ejection.consecutive_failures": member.ejection.consecutive,
                    "authgw.ejection.duration_ms": round((member.ejection.ejected_until - now) * 1000),
                },
            )

    @staticmethod
    def _cause(route: _Route, storms: int, skipped: int) -> Reason:
        attempts = route.result.attempts
        kinds = [a.kind for a in attempts]
        deadline_only = route.client_bound and all(
            (a.kind is AttemptKind.TIMEOUT and a.cut_short) or a.kind is AttemptKind.NOT_SENT
            for a in attempts
        )
        if deadline_only and (route.out_of_time or any(a.cut_short for a in attempts)):
            return Reason.CLIENT_DEADLINE  # no issuer was shown unavailable: the client gave too little time
        if kinds and all(k is AttemptKind.SYSTEM_DECLINE for k in kinds) and storms == skipped:
            return Reason.DECLINE_STORM
        if not kinds and skipped and storms == skipped:
            return Reason.DECLINE_STORM
        if not kinds:
            return Reason.NO_LIVE_MEMBERS
        return Reason.ALL_POOLS_FAILED

    def status(self) -> list[dict[str, object]]:
        """A view of pools for status endpoints and logs."""
        now = self._clock()
        return [
            {
                "pool": p.name,
                "priority": p.priority,
                "drained": p.drained,
                "verdict": p.health.verdict.value,
                "members": {
                    m.name: {"address": m.address, "state": m.ejection.state(now).value}
                    for m in p.members.values()
                },
            }
            for p in self.pools
        ]
