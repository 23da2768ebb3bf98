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
providers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
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
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

from authgw.observability.errors import TelemetrySettingError
from authgw.observability.settings import Exporter, TelemetrySettings
from authgw.observability.tailsampling import TailKeeper, TailPolicy, TailRules

__all__ = ["Telemetry"]

log = logging.getLogger(__name__)


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

    def __init__(self, settings: TelemetrySettings, tail_rules: TailRules | None = None) -> None:
        self.settings = settings
        self.tail: TailKeeper | None = None
        self._processor: BatchSpanProcessor | None = None
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
            processor = self._processor = BatchSpanProcessor(self._span_exporter())
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
        if self._processor is not None and settings.sampling == "tail":
            self.tail = self._tail_keeper(resource, self._processor, tail_rules)

    def _tail_keeper(
        self, resource: Resource, processor: SpanProcessor, rules: TailRules | None
    ) -> TailKeeper:
        s = self.settings
        policy = TailPolicy(s.tail_keep_ratio, s.tail_latency_threshold_s, s.tail_max_kept_per_s)
        log.info(
            "tail sampling: keep interesting traces, %.2f%% of the others, at most %d per second",
            policy.keep_ratio * 100,
            policy.max_kept_per_s,
        )
        return TailKeeper(policy, processor, resource, self.meter("authgw.observability"), rules)

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
        """A tracer of this process (with tail sampling: one whose traces are decided when they end)."""
        if self.tail is not None:
            return self.tail.tracer(name)
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
