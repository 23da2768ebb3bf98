"""Tail sampling: record each trace as plain data, decide at its end whether it is exported.

The OpenTelemetry Python SDK costs ~200 us of CPU per recorded authorization, most of it
in building SDK spans and encoding them. With `[telemetry] sampling = "tail"` the tracers
handed out are TailTracers: their spans (TailSpan) only store name, times, attributes,
events and status in a small object, with trace and span ids drawn here (so the traceparent
sent to an issuer carries the attempt's span id before the attempt). When the root span
ends, TailKeeper decides:

    keep   the trace is interesting (TailRules: an error status, a span or event the rules
           name, e.g. a stand-in decision or an ejection, a span name seen twice, e.g. a
           retry), slower than `latency_threshold_s`, sampled by its caller, or drawn at
           `keep_ratio` (drawn when the trace starts);
    bound  at most `max_kept_per_s` kept traces per second: the excess is dropped, counted
           in `authgw.traces.dropped` (attribute `reason`) and logged once a second while
           dropping (kept traces are counted in `authgw.traces.kept`);
    export kept traces become SDK ReadableSpans, with the ids, names, attributes, links and
           times recorded, handed to the normal span processor (BatchSpanProcessor + OTLP).

Sampled flag sent downstream (the traceparent of a span, e.g. to an issuer): set when the
caller's flag was set, when the ratio draw kept the trace, or when the trace had already
become interesting when the span started (an attempt after a failed one). So ratio-kept and
caller-sampled traces are complete on both sides; an interesting trace misses the issuer's
half of attempts made before it became interesting (a host that answers in the first
attempt of a trace that turns slow), and a trace dropped by the bound may leave issuer spans
without their parent. We chose missing issuer halves over orphan issuer spans: orphans cost
the issuer's collector for every request, the missing halves only concern interesting traces
whose gateway half says what happened.

Only the OpenTelemetry API and SDK types are used; the rules name no gateway module.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

__all__ = ["TailKeeper", "TailPolicy", "TailRules", "TailSpan", "TailTracer"]

log = logging.getLogger(__name__)

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)


@dataclass(frozen=True, slots=True)
class TailPolicy:
    """How many traces are kept (see the module docstring)."""

    keep_ratio: float = 0.01
    latency_threshold_s: float = 1.0
    max_kept_per_s: int = 100


@dataclass(frozen=True, slots=True)
class TailRules:
    """What makes a trace interesting, by name: span names, event names, span names seen twice."""

    spans: Mapping[str, str] = field(default_factory=dict)  # span name -> keep reason
    events: Mapping[str, str] = field(default_factory=dict)  # event name -> keep reason
    repeated: Mapping[str, str] = field(default_factory=dict)  # span name, 2nd time -> reason


class _Trace:
    """The spans of one trace until its root ends, and what the keep decision needs."""

    __slots__ = ("decided", "drawn", "kept", "reason", "seen", "spans")

    def __init__(self, reason: str, drawn: bool) -> None:
        self.reason = reason  # '' until something interesting happens
        self.drawn = drawn
        self.spans: list[TailSpan] = []
        self.seen: set[str] = set()
        self.decided = self.kept = False

    def flags(self) -> TraceFlags:
        return _SAMPLED if self.drawn or self.reason else _UNSAMPLED


class TailSpan(trace.Span):
    """A span kept as plain data until its trace's keep decision (the API's Span interface)."""

    __slots__ = (
        "_attrs", "_ctx", "_end", "_events", "_keeper", "_kind", "_later", "_links", "_name",
        "_parent", "_root", "_scope", "_start", "_status", "_trace",
    )  # fmt: skip

    def __init__(  # noqa: PLR0917  # positional: this runs twice per request
        self,
        keeper: TailKeeper,
        scope: InstrumentationScope,
        name: str,
        tr: _Trace,
        ctx: SpanContext,
        parent: SpanContext | None,
        root: bool,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue] | None,
        links: Sequence[Link] | None,
        start_time: int | None,
    ) -> None:
        self._keeper, self._scope, self._name, self._trace = keeper, scope, name, tr
        self._ctx, self._parent, self._root, self._kind = ctx, parent, root, kind
        self._attrs: dict[str, AttributeValue] = dict(attributes) if attributes else {}
        self._links: Sequence[Link] = links or ()
        self._events: list[Event] | None = None
        self._later: list[tuple[Callable[..., Mapping[str, AttributeValue]], tuple[Any, ...]]] | None = None
        self._status = _UNSET
        self._start: int = start_time or time.time_ns()
        self._end: int | None = None

    def get_span_context(self) -> SpanContext:
        return self._ctx

    def is_recording(self) -> bool:
        return self._end is None

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._attrs.update(attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._attrs[key] = value

    def add_event(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None, timestamp: int | None = None
    ) -> None:
        if self._events is None:
            self._events = []
        self._events.append(Event(name, attributes, timestamp or time.time_ns()))
        reason = self._keeper.rules.events.get(name)
        if reason and not self._trace.reason:
            self._trace.reason = reason

    def set_attributes_later(self, make: Callable[..., Mapping[str, AttributeValue]], *args: Any) -> None:
        """Attributes computed only if the trace is kept: `make(*args)` when the span is exported."""
        if self._later is None:
            self._later = []
        self._later.append((make, args))

    def update_name(self, name: str) -> None:
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self._status = status if isinstance(status, Status) else Status(status, description)
        if self._status.status_code is StatusCode.ERROR and not self._trace.reason:
            self._trace.reason = "error"

    def record_exception(self, exception: BaseException, *_: Any, **__: Any) -> None:
        self.add_event("exception", {"exception.type": type(exception).__name__})

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time or time.time_ns()
        if self._root:
            self._keeper.decide(self._trace, self)
        elif self._trace.decided and self._trace.kept:  # ended after its root: late, export alone
            self._keeper.export(self)

    def readable(self, resource: Resource) -> ReadableSpan:
        for make, args in self._later or ():
            self._attrs.update(make(*args))
        c = self._ctx
        exported = SpanContext(c.trace_id, c.span_id, False, _SAMPLED, c.trace_state)
        return ReadableSpan(
            self._name,
            exported,
            self._parent,
            resource,
            self._attrs,
            self._events or (),
            self._links,
            self._kind,
            status=self._status,
            start_time=self._start,
            end_time=self._end,
            instrumentation_scope=self._scope,
        )

    @property
    def ended(self) -> bool:
        return self._end is not None

    @property
    def duration_s(self) -> float:
        return ((self._end or self._start) - self._start) / 1e9


class TailTracer(trace.Tracer):
    """Starts TailSpans: a child joins its parent's trace, a root (or remote parent) starts one."""

    def __init__(self, keeper: TailKeeper, name: str) -> None:
        self._keeper = keeper
        self._scope = InstrumentationScope(name)

    def start_span(  # noqa: PLR0917  # type: ignore[override]  # the API's signature
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        *_: Any,
        **__: Any,
    ) -> trace.Span:
        parent_span = trace.get_current_span(context)
        found = parent_span.get_span_context()
        parent = found if found.is_valid else None
        keeper = self._keeper
        root = not isinstance(parent_span, TailSpan) or parent_span._trace.decided
        if isinstance(parent_span, TailSpan) and not root:
            tr = parent_span._trace
            if name in keeper.rules.repeated and name in tr.seen and not tr.reason:
                tr.reason = keeper.rules.repeated[name]
            tr.seen.add(name)
            ctx = SpanContext(found.trace_id, keeper.span_id(), False, tr.flags(), found.trace_state)
        else:
            tr, ctx = keeper.new_trace(parent)
        reason = keeper.rules.spans.get(name)
        if reason and not tr.reason:
            tr.reason = reason
        span = TailSpan(keeper, self._scope, name, tr, ctx, parent, root, kind, attributes, links, start_time)
        tr.spans.append(span)
        return span

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # noqa: PLR0917
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(span, end_on_exit, record_exception, set_status_on_exception) as current:
            yield current


class TailKeeper:
    """Decides, bounds and exports the traces of TailTracers (one per process)."""

    def __init__(
        self,
        policy: TailPolicy,
        processor: SpanProcessor,
        resource: Resource,
        meter: metrics.Meter,
        rules: TailRules | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.rules = rules or TailRules()
        self._processor = processor
        self._resource = resource
        self._random = random.Random()
        self._clock = clock
        self._window = 0
        self._kept_in_window = 0
        self._dropping = False
        self.kept = 0
        self.dropped = 0
        self._kept_counter = meter.create_counter(
            "authgw.traces.kept", "{trace}", "Traces kept by tail sampling, by reason"
        )
        self._dropped_counter = meter.create_counter(
            "authgw.traces.dropped",
            "{trace}",
            "Traces that tail sampling would keep but dropped above tail_max_kept_per_s, by reason",
        )

    def tracer(self, name: str) -> TailTracer:
        return TailTracer(self, name)

    def span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def new_trace(self, remote: SpanContext | None) -> tuple[_Trace, SpanContext]:
        """A trace for a root span: the caller's sampled flag is a keep reason; the ratio is drawn now."""
        caller = remote is not None and remote.trace_flags.sampled
        drawn = self._random.random() < self.policy.keep_ratio  # in [0, 1): ratio 0 draws none
        tr = _Trace("caller" if caller else "", drawn)
        trace_id = remote.trace_id if remote is not None else self._random.getrandbits(128) or 1
        state = remote.trace_state if remote is not None else None
        return tr, SpanContext(trace_id, self.span_id(), False, tr.flags(), state)

    def decide(self, tr: _Trace, root: TailSpan) -> None:
        """The root ended: keep (bounded) or forget the trace."""
        tr.decided = True
        reason = tr.reason
        if not reason and root.duration_s > self.policy.latency_threshold_s:
            reason = "latency"
        if not reason and tr.drawn:
            reason = "ratio"
        if not reason:
            tr.spans.clear()
            return
        if not self._admit(reason):
            tr.spans.clear()
            return
        tr.kept = True
        for span in tr.spans:
            if span.ended:
                self.export(span)
        tr.spans.clear()

    def _admit(self, reason: str) -> bool:
        window = int(self._clock())
        if window != self._window:
            self._window, self._kept_in_window, self._dropping = window, 0, False
        attrs = {"reason": reason}
        if self._kept_in_window >= self.policy.max_kept_per_s:
            self.dropped += 1
            self._dropped_counter.add(1, attrs)
            if not self._dropping:  # one line a second while dropping
                self._dropping = True
                log.warning(
                    "tail sampling: dropping traces above tail_max_kept_per_s=%d (%d dropped so far)",
                    self.policy.max_kept_per_s,
                    self.dropped,
                )
            return False
        self._kept_in_window += 1
        self.kept += 1
        self._kept_counter.add(1, attrs)
        return True

    def export(self, span: TailSpan) -> None:
        self._processor.on_end(span.readable(self._resource))
