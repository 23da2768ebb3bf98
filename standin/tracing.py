"""Spans of the stand-in engine's journal writes.

Each journal write is an `authgw.standin.journal` span, a child of the caller's
current span, its error status naming the exception type only (a store's error
text might quote what was stored). Trace-context helpers (traceparent to and
from OpenTelemetry, span links) are authgw.observability.tracecontext.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry.trace import Span, Status, StatusCode, Tracer

__all__ = ["JOURNAL_SPAN", "journal_span", "span_failed"]

JOURNAL_SPAN = "authgw.standin.journal"


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
