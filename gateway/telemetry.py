"""The gateway's telemetry: the `[telemetry]` section, its providers, tracer and meter.

    [telemetry]
    exporter = "otlp"                        # none | console | otlp, for traces and metrics
    traces_exporter = "otlp"                 # optional: overrides `exporter` for traces
    metrics_exporter = "none"                # optional: overrides `exporter` for metrics
    otlp_endpoint = "http://127.0.0.1:4317"  # optional: else OTEL_EXPORTER_OTLP_ENDPOINT, else localhost
    prometheus_listen = "127.0.0.1:9464"     # optional scrape endpoint (port 0: any free port)
    service_name = "authgw-gateway"          # service.name
    metric_export_interval_ms = 10000        # optional: else OTEL_METRIC_EXPORT_INTERVAL, else 60 s
    trace_sample_ratio = 1.0                 # optional: share of traces recorded (a caller's sampled
                                             # flag wins); else OTEL_TRACES_SAMPLER*, else all

Without the section the standard OTEL_* variables decide (see authgw.observability);
with nothing configured telemetry is off: no tracer is handed out (the hot path
builds no span), and the meter is the API's no-op one.

Span names (attributes in gateway.tracing):
    authgw.v1.Authorization/Authorize   server span, one per authorization
      authgw.attempt                    one per attempt on an issuer host (client span)
      authgw.standin.decide             the stand-in decision
        authgw.standin.journal          the journal write (inside the stand-in engine)
    authgw.standin_mode                 stand-in mode entered or left (event standin_mode.on/off)
Events: authgw.member.ejected on the authorization that ejected a member.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace

from authgw.observability import (
    Exporter,
    Telemetry,
    TelemetrySettingError,
    TelemetrySettings,
    check_otlp_endpoint,
    parse_exporter,
    parse_listen,
)
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.standin_mode import ModeChange
from gateway.tracing import ServerSpans

__all__ = ["DEFAULT_SERVICE_NAME", "GatewayTelemetry", "telemetry_settings"]

DEFAULT_SERVICE_NAME = "authgw-gateway"
_KEYS = frozenset(
    {"exporter", "traces_exporter", "metrics_exporter", "otlp_endpoint", "prometheus_listen"}
    | {"service_name", "metric_export_interval_ms", "trace_sample_ratio"}
)


def telemetry_settings(cfg: GatewayConfig, environ: Mapping[str, str] = os.environ) -> TelemetrySettings:
    """Settings from the config's [telemetry] section, or from OTEL_* when it is absent."""
    resource = {"service.instance.id": cfg.instance}
    section = cfg.raw.get("telemetry")
    if section is None:
        try:
            return TelemetrySettings.from_env(DEFAULT_SERVICE_NAME, environ, resource)
        except TelemetrySettingError as exc:
            raise ConfigError(cfg.source, "telemetry (absent: OTEL_* environment)", str(exc)) from exc
    if not isinstance(section, dict):
        raise ConfigError(cfg.source, "telemetry", "must be a table")
    for key in section:
        if key not in _KEYS:
            raise ConfigError(
                cfg.source, f"telemetry.{key}", f"unknown key (known: {', '.join(sorted(_KEYS))})"
            )

    def text(key: str, default: str | None = None) -> str | None:
        value = section.get(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(cfg.source, f"telemetry.{key}", f"must be a non-empty string, got {value!r}")
        return value

    def exporter(key: str, default: Exporter) -> Exporter:
        value = text(key)
        if value is None:
            return default
        try:
            return parse_exporter(f"telemetry.{key}", value, metrics_signal=False)
        except TelemetrySettingError as exc:
            raise ConfigError(cfg.source, f"telemetry.{key}", str(exc).split(": ", 1)[1]) from exc

    both = exporter("exporter", Exporter.NONE)
    try:
        endpoint = text("otlp_endpoint")
        if endpoint is not None:
            check_otlp_endpoint("telemetry.otlp_endpoint", endpoint)
        listen_text = text("prometheus_listen")
        listen = None if listen_text is None else parse_listen("telemetry.prometheus_listen", listen_text)
    except TelemetrySettingError as exc:
        key, problem = str(exc).split(": ", 1)
        raise ConfigError(cfg.source, key, problem) from exc
    return TelemetrySettings(
        service_name=text("service_name", DEFAULT_SERVICE_NAME) or DEFAULT_SERVICE_NAME,
        traces=exporter("traces_exporter", both),
        metrics=exporter("metrics_exporter", both),
        otlp_endpoint=endpoint,
        prometheus_listen=listen,
        metric_export_interval_s=_interval_s(cfg, section.get("metric_export_interval_ms")),
        trace_sample_ratio=_ratio(cfg, section.get("trace_sample_ratio")),
        resource_attributes=resource,
    )


def _interval_s(cfg: GatewayConfig, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 100:
        raise ConfigError(
            cfg.source, "telemetry.metric_export_interval_ms", f"must be an integer >= 100, got {value!r}"
        )
    return value / 1000.0


def _ratio(cfg: GatewayConfig, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigError(
            cfg.source, "telemetry.trace_sample_ratio", f"must be a number between 0 and 1, got {value!r}"
        )
    return float(value)


class GatewayTelemetry:
    """Telemetry of one gateway: the providers, the tracer (None when off) and the meter."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.tracer: trace.Tracer | None = telemetry.tracer("authgw.gateway") if telemetry.tracing else None
        self.standin_tracer: trace.Tracer | None = (
            telemetry.tracer("authgw.standin") if telemetry.tracing else None
        )
        # the authorization's server span, head-sampled on the request path (gateway.tracing)
        self.server_spans: ServerSpans | None = (
            ServerSpans(telemetry.presampled_tracer("authgw.gateway"), telemetry.settings.trace_sample_ratio)
            if telemetry.tracing
            else None
        )
        self.metering = telemetry.metrics
        self.meter: metrics.Meter = telemetry.meter("authgw.gateway")
        # The journal gauges are sampled off the hot path at most every 5 s, and as often as exported.
        export_s = telemetry.settings.metric_export_interval_s
        self.journal_sample_interval_s = min(5.0, export_s) if export_s else 5.0

    @classmethod
    def from_config(cls, cfg: GatewayConfig, environ: Mapping[str, str] = os.environ) -> GatewayTelemetry:
        """Build providers as configured; ConfigError names the key that is wrong."""
        settings = telemetry_settings(cfg, environ)
        try:
            return cls(Telemetry(settings))
        except TelemetrySettingError as exc:  # e.g. the scrape port is taken
            raise ConfigError(cfg.source, "telemetry.prometheus_listen", str(exc)) from exc

    @classmethod
    def off(cls) -> GatewayTelemetry:
        return cls(Telemetry(TelemetrySettings(DEFAULT_SERVICE_NAME)))

    def on_standin_mode(self, change: ModeChange) -> None:
        """A span for each stand-in mode change (a child of the request that caused it, if any)."""
        if self.tracer is None:
            return
        attrs: dict[str, str | bool] = {
            "authgw.standin_mode.active": change.active,
            "authgw.standin_mode.reason": change.reason,
        }
        with self.tracer.start_as_current_span("authgw.standin_mode", attributes=attrs) as span:
            span.add_event("standin_mode.on" if change.active else "standin_mode.off", attrs)

    async def close(self) -> None:
        """Flush and stop the exporters, off the event loop (an export may wait on the network)."""
        await asyncio.to_thread(self.telemetry.shutdown)
