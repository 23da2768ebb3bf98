"""The gateway's metrics (OpenTelemetry instruments), exported over OTLP and/or a Prometheus scrape.

Per request the gateway does one counter add and one histogram record, with
attribute dicts cached per (source, response code): nothing else on the hot
path. Everything else is observed when the reader collects (in the reader's
thread), from counters the router and stand-in mode keep anyway, and from a
journal sample taken off the hot path every few seconds.

    authgw.decisions                  counter    {source, response_code}
    authgw.refusals                   counter    {reason}          requests refused (reused_request_id)
    authgw.admission.refused          counter                      authorizations refused RESOURCE_EXHAUSTED
                                                                   past the adaptive limit (overload)
    authgw.admission.limit            gauge                        the adaptive concurrency limit now
    authgw.access.denied              counter    {reason}          calls refused PERMISSION_DENIED (reason:
                                                                   no_certificate, not_allowed,
                                                                   acquirer_mismatch, revoked)
    authgw.reversals                  counter    {source, status}  reversals taken (issuer: its answer;
                                                                   stand_in: applied / stored / no_effect)
    authgw.late_reversals             counter    {outcome}         without stand-in, reversals the gateway
                                                                   sends after its own 91 (acknowledged,
                                                                   given_up, dropped, lost at stop)
    authgw.acquirer_advices           counter    {kind, duplicate} acquirer advices recorded (kind:
                                                                   forced_post / offline_approved)
    authgw.authorization.duration     histogram  ms {source}
    authgw.attempts                   counter    {pool, outcome}   outcome: gateway.attempt.AttemptKind
    authgw.retries                    counter    {pool, reason}    reason: the previous attempt's outcome
    authgw.ejections                  counter    {pool}            members ejected by outlier detection
    authgw.members.ejected            gauge      {pool}            members ejected right now
    authgw.pool.verdict               gauge      {pool, verdict}   1 for the pool's verdict now (ok, failing,
                                                                   decline_storm), 0 for the others
    authgw.pool.drained               gauge      {pool}            1 while an operator drains the pool
    authgw.certificate.days_left      gauge      d {certificate}   days until each certificate expires
                                                                   (server, issuer_client, etcd_client,
                                                                   redis_client)
    authgw.members.rejected           counter    {pool, reason}    etcd members ignored: unknown_pool,
                                                                   address_not_allowed (MemberFilter)
    authgw.fleet.gateways             gauge                        gateways registered in etcd (this one
                                                                   included; absent without etcd)
    authgw.late_answers               counter                      issuer answers after the gateway gave up
    authgw.standin.mode               gauge      0 | 1
    authgw.routing.mode               gauge      {mode}    1 for how requests are routed now, 0 for
                                                           the others: issuer, stand-in (every pool failed),
                                                           forced-standin, forced-issuer (`authgw mode`)
    authgw.requests                   counter    {edge}    calls and messages received (grpc, iso8583),
                                                           valid or not, before any decision
    authgw.pool.members               gauge      {pool, state}  members routed to now by ejection state
                                                           (healthy, ejected, half_open); a configured
                                                           pool with no member left reports 0s
    authgw.member.state               gauge      {pool, member, state}  1 for each member's state now
    authgw.standin.policy.version     gauge                        stand-in policy version in use (0: the
                                                                   file; gateway.policy_watch)
    authgw.standin.policy.rejected    counter                      live policy values refused (invalid):
                                                                   the version in use stayed
    authgw.journal.depth              gauge      {store}   store: redis (stream entries), redis_pending
                                                           (delivered, not acked), local (SQLite backlog)
    authgw.journal.oldest_age         gauge      s {store} age of the oldest unsettled decision
    authgw.standin.exposure           gauge      {minor_unit} {window}  approved in stand-in in the budget's
                                                           period, fleet-wide (window: the budget's name)
    authgw.standin.exposure_budget    gauge      {minor_unit} {window}  the budget's ceiling
    authgw.settlement.advices         counter    {outcome} incremented by the settlement worker (given
                                                           this counter; the gateway itself never adds)
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation
from opentelemetry.metrics import CallbackT as Callback
from opentelemetry.util.types import AttributeValue

from authgw.v1 import authorization_pb2 as pb
from gateway.admission import AdaptiveLimit
from gateway.journal_sampler import JournalSampler
from gateway.outlier import EjectionState
from gateway.pool_health import PoolVerdict
from gateway.router import Router
from gateway.standin_mode import StandInMode
from health import Mode
from standin.policy_live import LivePolicy

__all__ = [
    "EDGE_GRPC",
    "EDGE_ISO8583",
    "LATENCY_BUCKETS_MS",
    "ROUTING_MODES",
    "GatewayMetrics",
    "settlement_counter",
]

log = logging.getLogger("authgw.metrics")

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 400, 800, 1200, 1600, 2000, 3000, 5000)

_SOURCE = {v: pb.Source.Name(v) for v in pb.Source.values()}
EDGE_GRPC, EDGE_ISO8583 = "grpc", "iso8583"
# authgw.routing.mode's values: an operator's forced mode wins over the gateway's own stand-in mode
ROUTING_MODES = ("issuer", "stand-in", "forced-standin", "forced-issuer")
_FORCED = {Mode.FORCE_STANDIN: "forced-standin", Mode.FORCE_ISSUER: "forced-issuer"}
K = TypeVar("K")


def _snapshot(counts: Mapping[K, int]) -> list[tuple[K, int]]:
    """Copy a Counter the event loop mutates (under the GIL a C-level copy sees one consistent state)."""
    for _ in range(3):
        try:
            return list(dict(counts).items())
        except RuntimeError:  # changed size during the copy: try again
            continue
    return []


def settlement_counter(meter: Meter) -> Counter:
    """authgw.settlement.advices: the counter a settlement worker adds to, one per advice, by outcome."""
    return meter.create_counter(
        "authgw.settlement.advices",
        unit="{advice}",
        description="Stand-in advices settled with the issuer, by outcome (added by settlement)",
    )


class GatewayMetrics:
    """The instruments of one gateway, bound to the objects they observe."""

    def __init__(
        self,
        meter: Meter,
        router: Router,
        standin_mode: StandInMode,
        journal: JournalSampler | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        fleet: Callable[[], int | None] | None = None,
        certificates: Mapping[str, float] | None = None,
        rejected_members: Mapping[tuple[str, str], int] | None = None,
        denied: Mapping[str, int] | None = None,
        mode: Callable[[], Mode] = lambda: Mode.AUTO,
        configured_pools: Iterable[str] = (),
        admission: AdaptiveLimit | None = None,
        policy: LivePolicy | None = None,
    ) -> None:
        """Args:
        fleet: how many gateways etcd lists now (None: unknown, e.g. no etcd).
        certificates: certificate label -> days left (gateway/transport.py refreshes it hourly).
        rejected_members: (pool, reason) -> etcd members ignored (gateway/membership.py MemberFilter).
        denied: reason -> calls refused PERMISSION_DENIED (gateway/edges/access.py AccessControl).
        mode: the operator's routing mode from etcd (/authgw/mode).
        configured_pools: pools of the config, exported with 0s while no member of theirs is known.
        policy: the stand-in engine's live policy (version in use, versions refused).
        """
        self._router = router
        self._standin_mode = standin_mode
        self._journal = journal
        self._clock = clock
        self._fleet = fleet
        self._certificates = certificates
        self._rejected_members = rejected_members
        self._denied = denied
        self._routing = mode
        self._configured = tuple(configured_pools)
        # requests received per edge: a plain dict add on the hot path, exported at collection
        self.received: Tally[str] = Tally()
        self._admission = admission
        self._policy = policy
        self._decision_attrs: dict[tuple[int, str], dict[str, AttributeValue]] = {}
        self._latency_attrs = {v: {"source": name} for v, name in _SOURCE.items()}
        self.decisions = meter.create_counter(
            "authgw.decisions", unit="{decision}", description="Authorizations answered, by source and code"
        )
        self.duration = meter.create_histogram(
            "authgw.authorization.duration",
            unit="ms",
            description="Time from request to answer",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS,
        )
        self.settlement_advices = settlement_counter(meter)
        self.refusals = meter.create_counter(
            "authgw.refusals",
            unit="{request}",
            description="Requests refused: a request id reused with other content",
        )
        self.reversals = meter.create_counter(
            "authgw.reversals", unit="{reversal}", description="Reversals taken, by source and status"
        )
        self.late_reversals = meter.create_counter(
            "authgw.late_reversals",
            unit="{reversal}",
            description="Without stand-in: reversals sent after the gateway's own 91, by outcome",
        )
        self.acquirer_advices = meter.create_counter(
            "authgw.acquirer_advices",
            unit="{advice}",
            description="Acquirer advices recorded (forced posts, offline approvals), by kind and repeat",
        )
        self._observe(meter)

    def _observe(self, meter: Meter) -> None:
        """The instruments read at collection time, from state the gateway keeps anyway."""
        counter, gauge = meter.create_observable_counter, meter.create_observable_gauge
        journal = self._journal is not None
        policy = self._policy
        instruments: list[tuple[Any, bool, str, Callback, str, str]] = [
            (counter, True, "authgw.attempts", self._attempts, "{attempt}", "Attempts on issuer hosts"),
            (counter, True, "authgw.retries", self._retries, "{attempt}", "Attempts after a failed one"),
            (counter, True, "authgw.ejections", self._ejections, "{ejection}", "Members ejected"),
            (counter, True, "authgw.late_answers", self._late_answers, "{answer}",
             "Issuer answers after the gateway gave up"),
            (counter, self._denied is not None, "authgw.access.denied", self._denials, "{call}",
             "Calls refused PERMISSION_DENIED, by reason"),
            (counter, self._rejected_members is not None, "authgw.members.rejected", self._rejected,
             "{member}",
             "Members seen in etcd but not allowed for their pool (or in an unknown pool)"),
            (counter, True, "authgw.requests", self._received, "{request}",
             "Calls and messages received, by edge"),
            (counter, self._admission is not None, "authgw.admission.refused", self._admission_refused,
             "{request}", "Authorizations refused RESOURCE_EXHAUSTED: overload"),
            (gauge, self._admission is not None, "authgw.admission.limit", self._admission_limit,
             "{request}", "Adaptive concurrency limit of authorizations"),
            (gauge, True, "authgw.members.ejected", self._ejected_now, "{member}", "Members ejected now"),
            (gauge, True, "authgw.pool.members", self._pool_members, "{member}",
             "Members routed to now, by ejection state"),
            (gauge, True, "authgw.member.state", self._member_states, "",
             "1 for each member's ejection state now"),
            (gauge, True, "authgw.routing.mode", self._routing_mode, "",
             "1 for how requests are routed now (issuer, stand-in, forced-standin, forced-issuer)"),
            (gauge, True, "authgw.standin.mode", self._mode, "", "1 while in stand-in mode"),
            (gauge, True, "authgw.pool.verdict", self._verdicts, "",
             "1 for each pool's verdict now (ok, failing, decline_storm)"),
            (gauge, True, "authgw.pool.drained", self._drained, "",
             "1 while a pool is drained by an operator"),
            (gauge, self._certificates is not None, "authgw.certificate.days_left", self._days_left, "d",
             "Days until each certificate expires"),
            (gauge, self._fleet is not None, "authgw.fleet.gateways", self._gateways, "{gateway}",
             "Gateways registered in etcd"),
            (gauge, policy is not None, "authgw.standin.policy.version", self._policy_version, "",
             "Stand-in policy version in use (0: the file)"),
            (counter, policy is not None, "authgw.standin.policy.rejected", self._policy_rejected,
             "{version}", "Live stand-in policy values refused (invalid): the previous version stays"),
            (gauge, journal, "authgw.journal.depth", self._journal_depth, "{decision}",
             "Stand-in decisions not yet settled"),
            (gauge, journal, "authgw.journal.oldest_age", self._journal_age, "s",
             "Age of the oldest unsettled stand-in decision"),
            (gauge, journal, "authgw.standin.exposure", self._exposure, "{minor_unit}",
             "Amount approved in stand-in in each exposure budget's period, fleet-wide"),
            (gauge, journal, "authgw.standin.exposure_budget", self._exposure_budget, "{minor_unit}",
             "Each exposure budget's ceiling"),
        ]  # fmt: skip
        for create, enabled, name, callback, unit, description in instruments:
            if enabled:
                create(name, [callback], unit=unit, description=description)

    def record_decision(self, response: pb.AuthorizeResponse, elapsed_s: float) -> None:
        """One answered authorization (hot path: two cached dict lookups, one add, one record)."""
        key = (response.source, response.response_code)
        attrs = self._decision_attrs.get(key)
        if attrs is None:
            if len(self._decision_attrs) >= 256:  # codes come from issuers: bound the cache
                self._decision_attrs.clear()
            attrs = {"source": _SOURCE.get(response.source, "UNKNOWN"), "response_code": key[1]}
            self._decision_attrs[key] = attrs
        self.decisions.add(1, attrs)
        self.duration.record(elapsed_s * 1000.0, self._latency_attrs.get(response.source))

    def record_refusal(self, reason: str) -> None:
        self.refusals.add(1, {"reason": reason})

    def record_reversal(self, response: pb.ReverseResponse) -> None:
        attrs = {
            "source": _SOURCE.get(response.source, "UNKNOWN"),
            "status": pb.ReversalStatus.Name(response.status).lower(),
        }
        self.reversals.add(1, attrs)

    def record_acquirer_advice(self, kind: str, duplicate: bool) -> None:
        self.acquirer_advices.add(1, {"kind": kind.lower(), "duplicate": duplicate})

    # -- observed at collection, in the reader's thread ----------------------------------------

    def _attempts(self, options: CallbackOptions) -> Iterable[Observation]:
        for (pool, outcome), n in _snapshot(self._router.attempts):
            yield Observation(n, {"pool": pool, "outcome": outcome})

    def _retries(self, options: CallbackOptions) -> Iterable[Observation]:
        for (pool, reason), n in _snapshot(self._router.retries):
            yield Observation(n, {"pool": pool, "reason": reason})

    def _ejections(self, options: CallbackOptions) -> Iterable[Observation]:
        for pool, n in _snapshot(self._router.ejections):
            yield Observation(n, {"pool": pool})

    def _received(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"edge": edge}) for edge, n in _snapshot(self.received)]

    def _states(self) -> dict[str, dict[str, EjectionState]] | None:
        """pool -> member -> ejection state now, configured pools without members included (None:
        membership changed during the copy, skip this collection)."""
        now = self._clock()
        out: dict[str, dict[str, EjectionState]] = {name: {} for name in self._configured}
        try:
            for pool in list(self._router.pools):
                members = list(pool.members.values())
                out[pool.name] = {m.name: m.ejection.state(now) for m in members}
        except RuntimeError:
            return None
        return out

    def _ejected_now(self, options: CallbackOptions) -> Iterable[Observation]:
        states = self._states() or {}
        return [
            Observation(sum(s is EjectionState.EJECTED for s in members.values()), {"pool": pool})
            for pool, members in states.items()
        ]

    def _pool_members(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for pool, members in (self._states() or {}).items():
            counts = Tally(members.values())
            out += [Observation(counts[s], {"pool": pool, "state": s.value}) for s in EjectionState]
        return out

    def _member_states(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(int(s is state), {"pool": pool, "member": member, "state": s.value})
            for pool, members in (self._states() or {}).items()
            for member, state in members.items()
            for s in EjectionState
        ]

    def _routing_mode(self, options: CallbackOptions) -> Iterable[Observation]:
        now = _FORCED.get(self._routing()) or ("stand-in" if self._standin_mode.active else "issuer")
        return [Observation(int(m == now), {"mode": m}) for m in ROUTING_MODES]

    def _late_answers(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._router.late.total)]

    def _verdicts(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for pool in list(self._router.pools):
            verdict = pool.health.verdict
            out += [
                Observation(int(v is verdict), {"pool": pool.name, "verdict": v.value}) for v in PoolVerdict
            ]
        return out

    def _drained(self, options: CallbackOptions) -> Iterable[Observation]:
        drained = {name: False for name in self._configured}
        drained |= {pool.name: pool.drained for pool in list(self._router.pools)}
        return [Observation(int(d), {"pool": pool}) for pool, d in drained.items()]

    def _days_left(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._certificates is not None
        return [Observation(days, {"certificate": label}) for label, days in dict(self._certificates).items()]

    def _denials(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._denied is not None
        return [Observation(n, {"reason": reason}) for reason, n in dict(self._denied).items()]

    def _admission_refused(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._admission is not None
        return [Observation(self._admission.refused)]

    def _admission_limit(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._admission is not None
        return [Observation(int(self._admission.limit))]

    def _rejected(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._rejected_members is not None
        return [
            Observation(n, {"pool": pool, "reason": reason})
            for (pool, reason), n in dict(self._rejected_members).items()
        ]

    def _gateways(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._fleet is not None
        count = self._fleet()
        return [] if count is None else [Observation(count)]

    def _policy_version(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._policy is not None
        return [Observation(self._policy.version)]

    def _policy_rejected(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._policy is not None
        return [Observation(self._policy.rejected)]

    def _mode(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1 if self._standin_mode.active else 0)]

    def _journal_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._journal is not None
        return [Observation(n, {"store": store}) for store, n in self._journal.depth.items()]

    def _journal_age(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._journal is not None
        return [Observation(age, {"store": store}) for store, age in self._journal.oldest_age_s().items()]

    def _exposure(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._journal is not None
        return [
            Observation(used, {"window": name}) for name, (used, _) in dict(self._journal.exposure).items()
        ]

    def _exposure_budget(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._journal is not None
        return [Observation(cap, {"window": name}) for name, (_, cap) in dict(self._journal.exposure).items()]
