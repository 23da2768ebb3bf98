"""OpenTelemetry set-up shared by every authgw process: providers built from settings, never global.

    settings = TelemetrySettings.from_env("authgw-health-agent")   # OTEL_* variables
    telemetry = Telemetry(settings)
    agent = HealthAgent(client, config, tracer=telemetry.tracer("authgw.health"))
    ...
    telemetry.shutdown()    # flushes; blocking, so async callers run it in a thread

An exporter of `none` gives the API's no-op providers: no span or metric is
built, and `tracing` / `metrics` are False so callers can skip even the calls.
`otlp` exports over OTLP/gRPC in batches (BatchSpanProcessor, periodic metric
reader); `console` prints to stdout for development; `prometheus` (metrics only)
serves a scrape endpoint. The providers are handed to the objects that need
them (constructor injection); nothing here touches OpenTelemetry's global
providers. The global propagator (W3C trace context) is used for inject/extract.

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

Errors: `TelemetrySettingError` (a `HealthError`) names the variable or key.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

from health.errors import HealthError

__all__ = ["Exporter", "Telemetry", "TelemetrySettingError", "TelemetrySettings", "parse_listen"]

log = logging.getLogger(__name__)


class TelemetrySettingError(HealthError):
    """A telemetry setting (environment variable or config key) is not acceptable; names it."""


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


class _StableResource(Resource):
    """A Resource that hashes once: the OTLP encoder groups spans by resource, hashing it per span
    as JSON of every attribute, which costs about as much as encoding the span itself."""

    def __init__(self, attributes: Mapping[str, Any], schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


class Telemetry:
    """The tracer and meter providers of one process, and their orderly shutdown."""

    def __init__(self, settings: TelemetrySettings) -> None:
        self.settings = settings
        self.tracing = settings.tracing
        self.metrics = settings.metering
        self.prometheus_port: int | None = None
        self._sdk_tracer: TracerProvider | None = None
        self._presampled: TracerProvider | None = None
        self._sdk_meter: MeterProvider | None = None
        self._httpd: WSGIServer | None = None
        self._shutdown_lock = threading.Lock()
        self._closed = False
        self.tracer_provider: trace.TracerProvider = trace.NoOpTracerProvider()
        self.meter_provider: metrics.MeterProvider = metrics.NoOpMeterProvider()
        if not (self.tracing or self.metrics):
            return
        created = Resource.create({"service.name": settings.service_name, **settings.resource_attributes})
        resource = _StableResource(created.attributes, created.schema_url)
        if self.tracing:
            sampler: Sampler | None = None
            if settings.trace_sample_ratio is not None:
                sampler = ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
            self._sdk_tracer = TracerProvider(resource=resource, sampler=sampler)
            processor = BatchSpanProcessor(self._span_exporter())
            self._sdk_tracer.add_span_processor(processor)
            self.tracer_provider = self._sdk_tracer
            if settings.trace_sample_ratio is not None:
                # Same pipeline, but every root span recorded: for a caller that applies the ratio
                # itself (see presampled_tracer). Its shutdown is the main provider's.
                self._presampled = TracerProvider(
                    resource=resource, sampler=ParentBased(ALWAYS_ON), shutdown_on_exit=False
                )
                self._presampled.add_span_processor(processor)
        if self.metrics:
            self._sdk_meter = MeterProvider(resource=resource, metric_readers=self._metric_readers())
            self.meter_provider = self._sdk_meter

    def _span_exporter(self) -> SpanExporter:
        if self.settings.traces is Exporter.CONSOLE:
            return ConsoleSpanExporter()
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415  # only when used
            OTLPSpanExporter,
        )

        return OTLPSpanExporter(endpoint=self.settings.otlp_endpoint)

    def _metric_readers(self) -> list[MetricReader]:
        s = self.settings
        interval_ms = None if s.metric_export_interval_s is None else s.metric_export_interval_s * 1000
        readers: list[MetricReader] = []
        if s.metrics is Exporter.CONSOLE:
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(), interval_ms))
        elif s.metrics is Exporter.OTLP:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415
                OTLPMetricExporter,
            )

            exporter = OTLPMetricExporter(endpoint=s.otlp_endpoint)
            readers.append(PeriodicExportingMetricReader(exporter, interval_ms))
        if s.prometheus_listen is not None:
            readers.append(self._prometheus(*s.prometheus_listen))
        return readers

    def _prometheus(self, host: str, port: int) -> MetricReader:
        # A private registry: two gateways in one process (tests) must not share prometheus_client's global.
        from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415
        from prometheus_client import CollectorRegistry, start_http_server  # noqa: PLC0415

        registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(registry=registry)
        try:
            self._httpd, _ = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise TelemetrySettingError(f"prometheus_listen: cannot listen on {host}:{port}: {exc}") from exc
        self.prometheus_port = int(self._httpd.server_address[1])
        log.info("prometheus metrics on http://%s:%d/metrics", host, self.prometheus_port)
        return reader

    def tracer(self, name: str) -> trace.Tracer:
        return self.tracer_provider.get_tracer(name)

    def presampled_tracer(self, name: str) -> trace.Tracer:
        """A tracer for a caller that has already decided to record a new trace.

        Its root spans are always recorded and exported with the rest; children still follow
        their parent. The caller applies `settings.trace_sample_ratio` itself (gateway.tracing's
        ServerSpans does, because the SDK's sampling path is costly on a hot path even when it
        drops the span). Without tracing, or without a configured ratio, this is `tracer(name)`.
        """
        if self._presampled is None:
            return self.tracer(name)
        return self._presampled.get_tracer(name)

    def meter(self, name: str) -> metrics.Meter:
        return self.meter_provider.get_meter(name)

    def force_flush(self, timeout_ms: int = 5000) -> None:
        """Export what is buffered now (blocking)."""
        if self._sdk_tracer is not None:
            self._sdk_tracer.force_flush(timeout_ms)
        if self._sdk_meter is not None:
            self._sdk_meter.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Flush and stop exporters and the scrape endpoint (blocking); safe to call twice."""
        with self._shutdown_lock:
            if self._closed:
                return
            self._closed = True
        if self._sdk_tracer is not None:
            self._sdk_tracer.shutdown()
        if self._sdk_meter is not None:
            self._sdk_meter.shutdown()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
