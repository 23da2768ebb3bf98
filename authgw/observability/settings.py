"""What to export, where, and as which service: `TelemetrySettings`, from the OTEL_* environment.

Environment honoured by `from_env` (the SDK and exporters read the rest
themselves: OTEL_BSP_*, OTEL_METRIC_EXPORT_INTERVAL, OTEL_TRACES_SAMPLER*,
OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_* headers/timeouts/TLS):

    OTEL_SDK_DISABLED=true                 everything off
    OTEL_TRACES_EXPORTER                   none | console | otlp
    OTEL_METRICS_EXPORTER                  none | console | otlp | prometheus
    OTEL_EXPORTER_OTLP_ENDPOINT            (or _TRACES_ / _METRICS_): with the exporter
                                           variable unset, its presence means otlp
    OTEL_EXPORTER_OTLP_PROTOCOL            grpc only
    OTEL_EXPORTER_PROMETHEUS_HOST / _PORT  scrape address (default localhost:9464)
    OTEL_SERVICE_NAME                      service.name (else the caller's default)

Errors: `TelemetrySettingError` names the variable or key.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from authgw.config import Section
from authgw.observability.errors import TelemetrySettingError

__all__ = [
    "Exporter",
    "TelemetrySettings",
    "check_otlp_endpoint",
    "parse_exporter",
    "parse_listen",
    "telemetry_from_section",
]


class Exporter(enum.StrEnum):
    """Where spans or metrics go."""

    NONE = "none"
    CONSOLE = "console"
    OTLP = "otlp"
    PROMETHEUS = "prometheus"  # metrics only: a scrape endpoint


def parse_exporter(name: str, value: str, *, metrics_signal: bool) -> Exporter:
    """`value` as an Exporter, or TelemetrySettingError naming `name`."""
    allowed = [e for e in Exporter if metrics_signal or e is not Exporter.PROMETHEUS]
    try:
        exporter = Exporter(value.strip().lower())
    except ValueError:
        exporter = None
    if exporter is None or exporter not in allowed:
        choices = " | ".join(e.value for e in allowed)
        raise TelemetrySettingError(f"{name}: must be {choices}, got {value!r}")
    return exporter


def parse_listen(name: str, value: str) -> tuple[str, int]:
    """'host:port' (port 0: any free port) as a tuple, or TelemetrySettingError naming `name`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise TelemetrySettingError(f"{name}: must be 'host:port' such as 127.0.0.1:9464, got {value!r}")
    return host, int(port)


def check_otlp_endpoint(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise TelemetrySettingError(
            f"{name}: must be a URL such as http://127.0.0.1:4317 (http: plaintext), got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """What to export, where, and as which service."""

    service_name: str
    """service.name of the resource."""
    traces: Exporter = Exporter.NONE
    """Span exporter (never PROMETHEUS)."""
    metrics: Exporter = Exporter.NONE
    """Metric exporter."""
    otlp_endpoint: str | None = None
    """OTLP/gRPC collector URL; None lets the exporter read OTEL_EXPORTER_OTLP_*ENDPOINT."""
    prometheus_listen: tuple[str, int] | None = None
    """Scrape endpoint (host, port), in addition to the metric exporter; None: none."""
    metric_export_interval_s: float | None = None
    """Period of the metric exporter; None: OTEL_METRIC_EXPORT_INTERVAL or 60 s."""
    trace_sample_ratio: float | None = None
    """Share of new traces recorded (parent-based: a caller's decision is kept); None: the SDK's
    OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else every trace."""
    sampling: str = "head"
    """"head": decided when a trace starts (trace_sample_ratio); "tail": when it ends (tail_*)."""
    tail_keep_ratio: float = 0.01
    """Tail sampling: share of uninteresting traces kept."""
    tail_latency_threshold_s: float = 1.0
    """Tail sampling: a trace longer than this is kept."""
    tail_max_kept_per_s: int = 100
    """Tail sampling: kept traces per second at most; the excess is dropped and counted."""
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    """Extra resource attributes (service.instance.id, pool, member, ...)."""

    @classmethod
    def from_env(
        cls,
        default_service_name: str,
        environ: Mapping[str, str] = os.environ,
        resource_attributes: Mapping[str, str] | None = None,
    ) -> TelemetrySettings:
        """Settings from the standard OTEL_* variables (nothing configured: everything off)."""
        attrs = dict(resource_attributes or {})
        service = environ.get("OTEL_SERVICE_NAME") or default_service_name
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls(service, resource_attributes=attrs)
        protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip().lower()
        if protocol != "grpc":
            raise TelemetrySettingError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: only grpc is supported, got {protocol!r}"
            )

        def chosen(signal: str) -> Exporter:
            variable = f"OTEL_{signal}_EXPORTER"
            value = environ.get(variable)
            if value:
                return parse_exporter(variable, value, metrics_signal=signal == "METRICS")
            endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
                f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"
            )
            return Exporter.OTLP if endpoint else Exporter.NONE

        metrics_exporter = chosen("METRICS")
        listen = None
        if metrics_exporter is Exporter.PROMETHEUS:
            host = environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost")
            port = environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")
            listen = parse_listen("OTEL_EXPORTER_PROMETHEUS_HOST/PORT", f"{host}:{port}")
        return cls(
            service,
            traces=chosen("TRACES"),
            metrics=metrics_exporter,
            prometheus_listen=listen,
            resource_attributes=attrs,
        )

    @property
    def tracing(self) -> bool:
        return self.traces is not Exporter.NONE

    @property
    def metering(self) -> bool:
        return self.metrics is not Exporter.NONE or self.prometheus_listen is not None


_SECTION_KEYS = (
    "exporter", "traces_exporter", "metrics_exporter", "otlp_endpoint", "prometheus_listen",
    "service_name", "metric_export_interval", "trace_sample_ratio",
    "sampling", "tail_keep_ratio", "tail_latency_threshold", "tail_max_kept_per_s",
)  # fmt: skip


def telemetry_from_section(s: Section, default_service_name: str = "authgw-gateway") -> TelemetrySettings:
    """Settings from a config file's `[telemetry]` table (ConfigError names the key).

    [telemetry]
    exporter = "otlp"                        # none | console | otlp, for traces and metrics
    traces_exporter = "otlp"                 # optional: overrides `exporter` for traces
    metrics_exporter = "none"                # optional: overrides `exporter` for metrics
    otlp_endpoint = "http://127.0.0.1:4317"  # optional: else OTEL_EXPORTER_OTLP_ENDPOINT
    prometheus_listen = "127.0.0.1:9464"     # optional scrape endpoint (port 0: any free port)
    service_name = "authgw-gateway"          # service.name
    metric_export_interval = "10s"           # optional: else OTEL_METRIC_EXPORT_INTERVAL, else 60 s
    trace_sample_ratio = 1.0                 # optional: share of traces recorded (a caller's
                                             # sampled flag wins); else OTEL_TRACES_SAMPLER*, else all
    sampling = "head"                        # head | tail: keep each trace when it ends if
                                             # interesting (authgw.observability.tailsampling)
    tail_keep_ratio = 0.01                   # tail: share of the other traces kept
    tail_latency_threshold = "1s"            # tail: slower traces are interesting
    tail_max_kept_per_s = 100                # tail: the excess is dropped, authgw.traces.dropped
    """
    s.check_known(_SECTION_KEYS)

    def exporter(key: str, default: Exporter) -> Exporter:
        if not s.has(key):
            return default
        try:
            return parse_exporter(key, s.string(key, ""), metrics_signal=False)
        except TelemetrySettingError as exc:
            s.fail(key, str(exc).split(": ", 1)[1], "use none, console or otlp")

    both = exporter("exporter", Exporter.NONE)
    endpoint = s.string("otlp_endpoint", "") or None
    listen_text = s.string("prometheus_listen", "")
    try:
        if endpoint is not None:
            check_otlp_endpoint("otlp_endpoint", endpoint)
        listen = parse_listen("prometheus_listen", listen_text) if listen_text else None
    except TelemetrySettingError as exc:
        key, problem = str(exc).split(": ", 1)
        s.fail(key, problem, "see the example config")
    sampling = s.string("sampling", "head", pattern="head|tail", fix='use "head" or "tail"')
    if sampling == "tail" and s.has("trace_sample_ratio"):
        s.fail("trace_sample_ratio", 'is head sampling, not with sampling = "tail"', "use tail_keep_ratio")
    threshold = s.duration("tail_latency_threshold", timedelta(seconds=1), minimum=timedelta(milliseconds=1))
    interval = s.duration("metric_export_interval", timedelta(0), minimum=timedelta(milliseconds=100))
    return TelemetrySettings(
        service_name=s.string("service_name", default_service_name) or default_service_name,
        traces=exporter("traces_exporter", both),
        metrics=exporter("metrics_exporter", both),
        otlp_endpoint=endpoint,
        prometheus_listen=listen,
        metric_export_interval_s=interval.total_seconds() if s.has("metric_export_interval") else None,
        trace_sample_ratio=s.share("trace_sample_ratio", 1.0) if s.has("trace_sample_ratio") else None,
        sampling=sampling,
        tail_keep_ratio=s.share("tail_keep_ratio", 0.01),
        tail_latency_threshold_s=threshold.total_seconds(),
        tail_max_kept_per_s=s.integer("tail_max_kept_per_s", 100, minimum=1),
    )
