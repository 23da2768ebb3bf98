"""W3C trace context as text: traceparent strings to and from OpenTelemetry, and gRPC metadata.

authgw writes the `traceparent` / `tracestate` metadata itself rather than through the
global propagator: the composite propagator (trace context + baggage) costs more than
the rest of an attempt span, and nothing in authgw uses baggage.

Each stand-in journal entry stores the traceparent of the authorization that produced
it. Settlement runs long after that trace has ended, so its spans do not continue it:
they start a trace of their own and *link* to the original::

    link = link_from_traceparent(entry.trace_context)
    with tracer.start_as_current_span("authgw.settlement.advise", links=[link] if link else []):
        ...

Only the OpenTelemetry API is used here (no SDK, no global provider).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, TraceFlags, TraceState

__all__ = [
    "current_traceparent",
    "format_traceparent",
    "incoming_span_context",
    "link_from_traceparent",
    "outgoing_metadata",
    "parse_traceparent",
]

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


def incoming_span_context(metadata: Iterable[tuple[str, Any]] | None) -> SpanContext | None:
    """The caller's W3C trace context from gRPC invocation metadata, or None (a new trace)."""
    traceparent = tracestate = ""
    for key, value in metadata or ():
        if key == "traceparent":
            traceparent = value
        elif key == "tracestate":
            tracestate = value
    if not traceparent or not isinstance(traceparent, str):
        return None
    return parse_traceparent(traceparent, tracestate if isinstance(tracestate, str) else "")


def outgoing_metadata(span: Span) -> tuple[tuple[str, str], ...]:
    """The W3C headers that make the issuer's span a child of `span`."""
    ctx = span.get_span_context()
    traceparent = format_traceparent(ctx)
    if not traceparent:
        return ()
    if ctx.trace_state:
        return (("traceparent", traceparent), ("tracestate", ctx.trace_state.to_header()))
    return (("traceparent", traceparent),)
