"""Observability shared by every authgw process: tracing and metrics set-up, logs, W3C trace context.

    settings.py      TelemetrySettings: what to export, where (OTEL_* or a config section)
    providers.py     Telemetry: tracer and meter providers built from settings, never global
    tailsampling.py  tail sampling: traces recorded as plain data, kept or not when they end
    tracecontext.py  traceparent to and from OpenTelemetry and gRPC metadata; span links
    logs.py          log set-up (JSON lines with trace ids, or text), card numbers masked
    errors.py        ObservabilityError and its tree

Every package may import this one; it imports none of them.
"""

from authgw.observability.errors import ObservabilityError, TelemetrySettingError
from authgw.observability.logs import JsonFormatter, LogFormat, configure_logging, mask_card_numbers
from authgw.observability.providers import Telemetry
from authgw.observability.settings import (
    Exporter,
    TelemetrySettings,
    check_otlp_endpoint,
    parse_exporter,
    parse_listen,
)
from authgw.observability.tailsampling import TailPolicy, TailRules
from authgw.observability.tracecontext import (
    current_traceparent,
    format_traceparent,
    incoming_span_context,
    link_from_traceparent,
    outgoing_metadata,
    parse_traceparent,
)

__all__ = [
    "Exporter",
    "JsonFormatter",
    "LogFormat",
    "ObservabilityError",
    "TailPolicy",
    "TailRules",
    "Telemetry",
    "TelemetrySettingError",
    "TelemetrySettings",
    "check_otlp_endpoint",
    "configure_logging",
    "current_traceparent",
    "format_traceparent",
    "incoming_span_context",
    "link_from_traceparent",
    "mask_card_numbers",
    "outgoing_metadata",
    "parse_exporter",
    "parse_listen",
    "parse_traceparent",
]
