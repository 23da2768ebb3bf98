"""The gateway's telemetry: the `[telemetry]` section, its providers, tracer and meter.

The section's keys are read by authgw.observability.settings.telemetry_from_section.
Without the section the standard OTEL_* variables decide (see authgw.observability);
with nothing configured telemetry is off: no tracer is handed out (the hot path
builds no span), and the meter is the API's no-op one.

Span names (attributes in gateway.tracing):
    authgw.v1.Authorization/Authorize   server span, one per authorization
      authgw.attempt                    one per attempt on an issuer host (client span)
      authgw.standin.decide             the stand-in decision
        authgw.standin.journal          the journal write (inside the stand-in engine)
    authgw.standin_mode                 stand-in mode entered or left (event standin_mode.on/off)
Events: authgw.member.ejected on the authorization that ejected a member; authgw.failover on one
that passed over a pool (failing, ejected, drained), with authgw.pool.decline_storm when some were
in a decline storm.

Sampling: `trace_sample_ratio` (head: decided as the trace starts, gateway.tracing.ServerSpans) or
`sampling = "tail"` (decided as it ends: authgw.observability.tailsampling with the gateway's
KEEP_RULES; the tracers handed out are then tail tracers and the SDK builds only kept spans).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping

from opentelemetry import metrics, trace

from authgw.observability import (
    Telemetry,
    TelemetrySettingError,
    TelemetrySettings,
)
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.standin_mode import ModeChange
from gateway.tracing import KEEP_RULES, STANDIN_MODE_SPAN, ServerSpans

__all__ = ["DEFAULT_SERVICE_NAME", "GatewayTelemetry", "telemetry_settings"]

DEFAULT_SERVICE_NAME = "authgw-gateway"


def telemetry_settings(cfg: GatewayConfig, environ: Mapping[str, str] = os.environ) -> TelemetrySettings:
    """Settings from the config's [telemetry] section, or from OTEL_* when it is absent."""
    resource = {"service.instance.id": cfg.instance}
    if cfg.telemetry is not None:
        return dataclasses.replace(cfg.telemetry, resource_attributes=resource)
    try:
        return TelemetrySettings.from_env(DEFAULT_SERVICE_NAME, environ, resource)
    except TelemetrySettingError as exc:
        raise ConfigError(cfg.source, "telemetry (absent: OTEL_* environment)", str(exc)) from exc


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
            return cls(Telemetry(settings, KEEP_RULES))
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
        with self.tracer.start_as_current_span(STANDIN_MODE_SPAN, attributes=attrs) as span:
            span.add_event("standin_mode.on" if change.active else "standin_mode.off", attrs)

    async def close(self) -> None:
        """Flush and stop the exporters, off the event loop (an export may wait on the network)."""
        await asyncio.to_thread(self.telemetry.shutdown)
