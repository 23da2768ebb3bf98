"""Head sampling of the authorization's server span (gateway.tracing.ServerSpans).

The decision must follow ParentBased(TraceIdRatioBased): a caller's sampled flag
wins, otherwise `ratio` of new traces are recorded; an unrecorded request still
carries a valid, unsampled trace context; children of a recorded span are
recorded even when the provider's own ratio would drop them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, set_span_in_context

from authgw.observability import Exporter, Telemetry, TelemetrySettings, format_traceparent, outgoing_metadata
from chaos.otlp_receiver import OtlpReceiver
from gateway.telemetry import GatewayTelemetry
from gateway.tracing import SERVER_SPAN, ServerSpans
from tests.gateway_fixtures import gateway_config

CALLER_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
CALLER_SAMPLED = (("traceparent", f"00-{CALLER_TRACE:032x}-b7ad6b7169203331-01"),)
CALLER_UNSAMPLED = (("traceparent", f"00-{CALLER_TRACE:032x}-b7ad6b7169203331-00"),)


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


def _spans(exporter: InMemorySpanExporter, ratio: float | None, provider_ratio: float = 0.0) -> ServerSpans:
    """ServerSpans over a presampled provider, as Telemetry.presampled_tracer builds it."""
    sampler = ParentBased(ALWAYS_ON) if ratio is not None else ParentBased(TraceIdRatioBased(provider_ratio))
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return ServerSpans(provider.get_tracer("test"), ratio)


def test_ratio_zero_records_nothing_but_propagates_an_unsampled_context(
    exported: InMemorySpanExporter,
) -> None:
    """No caller context, ratio 0: no span recorded; the issuer still gets a valid traceparent (00)."""
    spans = _spans(exported, 0.0)
    contexts = set()
    for _ in range(50):
        span = spans.start(())
        assert not span.is_recording()
        ctx = span.get_span_context()
        assert ctx.is_valid and not ctx.trace_flags.sampled
        assert dict(outgoing_metadata(span))["traceparent"].endswith("-00")
        contexts.add((ctx.trace_id, ctx.span_id))
        span.end()
    assert len(contexts) == 50  # fresh ids per request
    assert exported.get_finished_spans() == ()


def test_ratio_one_records_every_new_trace(exported: InMemorySpanExporter) -> None:
    spans = _spans(exported, 1.0)
    for _ in range(20):
        span = spans.start(())
        assert span.is_recording()
        span.end()
    finished = exported.get_finished_spans()
    assert len(finished) == 20
    assert {s.name for s in finished} == {SERVER_SPAN}
    assert {s.kind for s in finished} == {SpanKind.SERVER}


def test_ratio_samples_about_that_share(exported: InMemorySpanExporter) -> None:
    """2,000 new traces at 0.3: the recorded share is 0.3 within five standard deviations."""
    spans = _spans(exported, 0.3)
    for _ in range(2000):
        spans.start(()).end()
    assert 500 <= len(exported.get_finished_spans()) <= 700


def test_a_sampled_caller_wins_over_ratio_zero(exported: InMemorySpanExporter) -> None:
    """The acquirer asked for this trace: recorded, as a child in the caller's trace."""
    span = _spans(exported, 0.0).start(CALLER_SAMPLED)
    assert span.is_recording()
    span.end()
    (finished,) = exported.get_finished_spans()
    assert finished.context is not None and finished.context.trace_id == CALLER_TRACE
    assert finished.parent is not None and finished.parent.span_id == 0xB7AD6B7169203331


def test_an_unsampled_caller_wins_over_ratio_one(exported: InMemorySpanExporter) -> None:
    """The caller dropped this trace: not recorded, but the trace id carries on, flagged unsampled."""
    span = _spans(exported, 1.0).start(CALLER_UNSAMPLED)
    assert not span.is_recording()
    ctx = span.get_span_context()
    assert ctx.trace_id == CALLER_TRACE and ctx.span_id != 0xB7AD6B7169203331
    assert format_traceparent(ctx).endswith("-00")
    assert exported.get_finished_spans() == ()


def test_without_ratio_the_sdk_sampler_decides(exported: InMemorySpanExporter) -> None:
    """ratio None: the provider's own sampler applies (here one that drops every new trace)."""
    spans = _spans(exported, None, provider_ratio=0.0)
    assert not spans.start(()).is_recording()
    assert spans.start(CALLER_SAMPLED).is_recording()


async def test_presampled_tracer_records_roots_and_children_follow() -> None:
    """Telemetry at ratio 0: its ordinary tracer drops new traces, the presampled one records them
    and exports them through the same pipeline, and a child made by the ordinary tracer under a
    recorded root is recorded and exported too."""
    async with OtlpReceiver() as receiver:
        settings = TelemetrySettings(
            "authgw-test", traces=Exporter.OTLP, otlp_endpoint=receiver.endpoint, trace_sample_ratio=0.0
        )
        telemetry = Telemetry(settings)
        try:
            dropped = telemetry.tracer("t").start_span("dropped")
            assert not dropped.is_recording()
            dropped.end()
            root = telemetry.presampled_tracer("t").start_span("root")
            assert root.is_recording()
            child = telemetry.tracer("t").start_span("child", set_span_in_context(root))
            assert child.is_recording()
            child.end()
            root.end()
        finally:
            await asyncio.to_thread(telemetry.shutdown)  # flushes to the receiver on this loop
        exported = {span.name: span for span in receiver.spans()}
    assert set(exported) == {"root", "child"}
    assert exported["child"].trace_id == exported["root"].trace_id
    assert exported["child"].parent_span_id == exported["root"].span_id


def test_presampled_tracer_without_ratio_keeps_the_env_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    """No trace_sample_ratio: OTEL_TRACES_SAMPLER decides for every tracer, the presampled one too."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    telemetry = Telemetry(TelemetrySettings("authgw-test", traces=Exporter.CONSOLE))
    try:
        assert not telemetry.presampled_tracer("t").start_span("x").is_recording()
        assert not telemetry.tracer("t").start_span("x").is_recording()
    finally:
        telemetry.shutdown()


async def test_the_gateway_records_the_configured_share() -> None:
    """The gateway's own wiring at trace_sample_ratio 0.5: about half the new traces are recorded.
    Were its ServerSpans built on the ordinary tracer, the SDK's ratio would drop half of what
    ServerSpans chose to record, and about a quarter would be."""
    telemetry_section = {"traces_exporter": "console", "metrics_exporter": "none", "trace_sample_ratio": 0.5}
    cfg = gateway_config([("primary", ["127.0.0.1:7001"])], extra={"telemetry": telemetry_section})
    telemetry = GatewayTelemetry.from_config(cfg, {})
    try:
        assert telemetry.server_spans is not None
        recorded = sum(telemetry.server_spans.start(()).is_recording() for _ in range(2000))
    finally:
        await telemetry.close()  # the spans were never ended: nothing is printed
    assert 890 <= recorded <= 1110  # 1,000 +- 5 standard deviations (~22)
