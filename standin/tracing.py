"""The journal's trace context: W3C traceparent strings, to and from OpenTelemetry.

Each journal entry stores the traceparent of the authorization that produced it
(`trace_context`). Settlement runs long after that trace has ended, so its spans
do not continue it: they start a trace of their own and *link* to the original::

    link = link_from_traceparent(entry.trace_context)
    with tracer.start_as_current_span("authgw.settlement.advise", links=[link] if link else []):
        ...

The engine's journal writes are spans too (`journal_span`): a child of the
caller's current span, error status named by the exception type only.

Only the OpenTelemetry API is used here (no SDK, no global provider).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode, TraceFlags, Tracer, TraceState

__all__ = [
    "JOURNAL_SPAN",
    "current_traceparent",
    "format_traceparent",
    "journal_span",
    "link_from_traceparent",
    "parse_traceparent",
    "span_failed",
]

JOURNAL_SPAN = "authgw.standin.journal"

_VERSION = "00"
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?"
)


def format_traceparent(ctx: SpanContext) -> str:
    """`ctx` as a W3C traceparent ('' when the context is not valid)."""
    if not ctx.is_valid:
        return ""
    return f"{_VERSION}-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def current_traceparent() -> str:
    """The traceparent of the current span ('' when there is none, e.g. tracing off)."""
    return format_traceparent(trace.get_current_span().get_span_context())


def parse_traceparent(value: str, tracestate: str = "") -> SpanContext | None:
    """A remote SpanContext from a traceparent (and tracestate), or None when empty or malformed."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None or match["version"] == "ff" or (match["version"] == _VERSION and match["rest"]):
        return None
    trace_id, span_id = int(match["trace"], 16), int(match["span"], 16)
    if trace_id == 0 or span_id == 0:
        return None
    flags = TraceFlags(int(match["flags"], 16))
    state = TraceState.from_header([tracestate]) if tracestate else None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags, trace_state=state)


def link_from_traceparent(value: str) -> Link | None:
    """A span link to the authorization recorded by `value` (a journal entry's trace_context)."""
    ctx = parse_traceparent(value)
    return None if ctx is None else Link(ctx, {"authgw.link": "authorization"})


@contextlib.contextmanager
def journal_span(tracer: Tracer | None, kind: str) -> Iterator[Span | None]:
    """A span around one journal write to store `kind` (redis | sqlite), or nothing without a tracer."""
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        JOURNAL_SPAN,
        attributes={"authgw.journal.kind": kind},
        record_exception=False,  # store errors are summarised by type: no text of theirs in a span
        set_status_on_exception=False,
    ) as span:
        yield span


def span_failed(span: Span | None, exc: BaseException) -> None:
    """Mark `span` failed, naming the error's type only (its text might quote what was stored)."""
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
