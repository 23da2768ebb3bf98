"""Telemetry settings ([telemetry] and OTEL_*), traceparent helpers, JSON logs: no processes."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from authgw.observability import (
    Exporter,
    JsonFormatter,
    TelemetrySettingError,
    TelemetrySettings,
    current_traceparent,
    link_from_traceparent,
    mask_card_numbers,
    parse_traceparent,
)
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.telemetry import GatewayTelemetry, telemetry_settings
from tests.gateway_fixtures import gateway_config

_POOLS = [("primary", ["127.0.0.1:7001"])]


def _cfg(telemetry: dict[str, Any] | None) -> GatewayConfig:
    return gateway_config(_POOLS, extra=None if telemetry is None else {"telemetry": telemetry})


def test_section_sets_both_signals_and_overrides() -> None:
    """`exporter` applies to traces and metrics; the per-signal keys override it."""
    s = telemetry_settings(
        _cfg({"exporter": "otlp", "metrics_exporter": "none", "otlp_endpoint": "http://127.0.0.1:4317"}), {}
    )
    assert (s.traces, s.metrics, s.otlp_endpoint) == (Exporter.OTLP, Exporter.NONE, "http://127.0.0.1:4317")
    assert s.resource_attributes["service.instance.id"] == "gw-test"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"exporter": "zipkin"}, "telemetry.exporter"),
        ({"traces_exporter": 3}, "telemetry.traces_exporter"),
        ({"otlp_endpoint": "127.0.0.1:4317"}, "telemetry.otlp_endpoint"),
        ({"prometheus_listen": "9464"}, "telemetry.prometheus_listen"),
        ({"metric_export_interval": "fast"}, "telemetry.metric_export_interval"),
        ({"sampler": "always"}, "telemetry.sampler"),
        ({"trace_sample_ratio": 1.5}, "telemetry.trace_sample_ratio"),
        ({"sampling": "always"}, "telemetry.sampling"),
        ({"sampling": "tail", "trace_sample_ratio": 0.1}, "telemetry.trace_sample_ratio"),
        ({"sampling": "tail", "tail_keep_ratio": -0.1}, "telemetry.tail_keep_ratio"),
        ({"sampling": "tail", "tail_latency_threshold": 2}, "telemetry.tail_latency_threshold"),
        ({"sampling": "tail", "tail_max_kept_per_s": 0}, "telemetry.tail_max_kept_per_s"),
    ],
)
def test_section_errors_name_the_key(section: dict[str, Any], key: str) -> None:
    """A wrong [telemetry] value is a ConfigError naming its key."""
    with pytest.raises(ConfigError) as err:
        telemetry_settings(_cfg(section), {})
    assert err.value.key == key


def test_without_section_nothing_configured_means_off() -> None:
    """No [telemetry], no OTEL_*: no tracer is handed out, so the hot path builds no span."""
    telemetry = GatewayTelemetry.from_config(_cfg(None), {})
    assert (telemetry.tracer, telemetry.metering) == (None, False)


def test_without_section_otel_env_decides() -> None:
    """Without [telemetry], OTEL_* decide: an OTLP endpoint alone means OTLP for both signals."""
    s = telemetry_settings(
        _cfg(None), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_SERVICE_NAME": "gw-eu"}
    )
    assert (s.traces, s.metrics, s.service_name) == (Exporter.OTLP, Exporter.OTLP, "gw-eu")
    s = telemetry_settings(_cfg(None), {"OTEL_TRACES_EXPORTER": "console"})
    assert (s.traces, s.metrics) == (Exporter.CONSOLE, Exporter.NONE)


def test_env_prometheus_and_disabled() -> None:
    """OTEL_METRICS_EXPORTER=prometheus serves a scrape endpoint; OTEL_SDK_DISABLED turns all off."""
    s = TelemetrySettings.from_env(
        "svc", {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "9500"}
    )
    assert (s.metrics, s.prometheus_listen) == (Exporter.PROMETHEUS, ("localhost", 9500))
    s = TelemetrySettings.from_env(
        "svc", {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
    )
    assert (s.tracing, s.metering) == (False, False)


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "jaeger"},
        {"OTEL_TRACES_EXPORTER": "prometheus"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
    ],
)
def test_env_errors_name_the_variable(env: dict[str, str]) -> None:
    """An unsupported OTEL_* value is refused, naming the variable."""
    with pytest.raises(TelemetrySettingError, match=next(iter(env))):
        TelemetrySettings.from_env("svc", env)


def test_traceparent_round_trip_and_link() -> None:
    """The current span's traceparent parses back to it; a link from it points at that span."""
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("authorization") as span:
        traceparent = current_traceparent()
    ctx = span.get_span_context()
    assert traceparent == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    link = link_from_traceparent(traceparent)
    assert link is not None
    assert (link.context.trace_id, link.context.span_id, link.context.is_remote) == (
        ctx.trace_id,
        ctx.span_id,
        True,
    )
    assert link.context.trace_flags.sampled
    assert current_traceparent() == ""  # no span


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # zero trace id
        "00-" + "a" * 32 + "-" + "1" * 16 + "-01-extra",  # version 00 has exactly four fields
        "ff-" + "a" * 32 + "-" + "1" * 16 + "-01",
        "00-" + "A" * 32 + "-" + "1" * 16 + "-01",  # upper case is not W3C
    ],
)
def test_bad_traceparent_gives_no_link(value: str) -> None:
    """A missing or malformed journal traceparent gives no link rather than an error."""
    assert parse_traceparent(value) is None
    assert link_from_traceparent(value) is None


def _log_line(message: str, *args: object) -> dict[str, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("authgw.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
    line: dict[str, Any] = json.loads(stream.getvalue())
    return line


def test_json_log_line_fields_and_span_ids() -> None:
    """A JSON line holds time, level, logger, message, and the current span's ids when there is one."""
    assert _log_line("plain").keys() == {"time", "level", "logger", "message"}
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        line = _log_line("in %s", "span")
    ctx = span.get_span_context()
    assert (line["message"], line["level"], line["logger"]) == ("in span", "WARNING", "authgw.test.json")
    assert (line["trace_id"], line["span_id"]) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")


def test_log_lines_mask_card_numbers() -> None:
    """A card number that slips into a log message shows only its last four digits."""
    line = _log_line("issuer said: bad card %s", "6200000000000005")
    assert line["message"] == "issuer said: bad card …0005"
    assert mask_card_numbers("port 127.0.0.1:41111, amount 123456") == "port 127.0.0.1:41111, amount 123456"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("card 5371 9428 6487 9302 refused", "card …9302 refused"),
        ("id r-5371-9428-6487-9302", "id r-…9302"),
        ("amex 3748 295164 77833.", "amex …7833."),
        ("19 digits 6504 8391 7362 0584 158", "19 digits …4158"),
        ("at 2026-11-30 10:32:01.123, 4.5 ms", "at 2026-11-30 10:32:01.123, 4.5 ms"),
        ("phone +33 1 23 45 67 89, zip 75001 1234", "phone +33 1 23 45 67 89, zip 75001 1234"),
    ],
)
def test_card_numbers_in_groups_are_masked_too(text: str, masked: str) -> None:
    """A card number written in groups (spaces or dashes) shows only its last four; dates, phones do not."""
    assert mask_card_numbers(text) == masked
