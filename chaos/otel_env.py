"""Telemetry of the issuer simulator, from the standard OTEL_* environment.

    telemetry = sim_telemetry(pool, member)           # off unless OTEL_* says otherwise
    sim = IssuerSim(..., interceptors=server_interceptors(telemetry))
    ...
    telemetry.shutdown()

With tracing on, the simulator's IssuerHost calls run in a server span from
opentelemetry-instrumentation-grpc's aio interceptor: it extracts the W3C
trace context the gateway put in the call's metadata, so the span is a child of
the gateway's attempt span and a collector shows gateway -> issuer as one trace.
That interceptor records method, peer and status, never the request message.
"""

from __future__ import annotations

from typing import Any

import grpc.aio
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.instrumentation.grpc.filters import service_name

from authgw.observability import Telemetry, TelemetrySettings

__all__ = ["ISSUER_SERVICE_NAME", "server_interceptors", "sim_telemetry"]

ISSUER_SERVICE_NAME = "authgw-issuer-sim"
_TRACED_SERVICE = "authgw.v1.IssuerHost"  # not the control or health services


def sim_telemetry(pool: str, member: str) -> Telemetry:
    """Providers for one simulator process; raises TelemetrySettingError naming a bad variable."""
    settings = TelemetrySettings.from_env(
        ISSUER_SERVICE_NAME, resource_attributes={"authgw.pool": pool, "authgw.member": member}
    )
    return Telemetry(settings)


def server_interceptors(telemetry: Telemetry) -> list[grpc.aio.ServerInterceptor]:
    """The tracing interceptor when tracing is on, else none (no cost per call)."""
    if not telemetry.tracing:
        return []
    interceptor: Any = aio_server_interceptor(  # type: ignore[no-untyped-call]  # the package has no annotations
        tracer_provider=telemetry.tracer_provider, filter_=service_name(_TRACED_SERVICE)
    )
    return [interceptor]
