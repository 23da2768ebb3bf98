"""TailKeeper's decision in-process, with a controlled clock: latency, retries, ratio, the bound, late spans.

The end-to-end behaviour (a real gateway, an OTLP receiver) is in tests/test_telemetry_tail.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from authgw.observability import TailPolicy
from authgw.observability.tailsampling import TailKeeper
from gateway.tracing import ATTEMPT_SPAN, KEEP_RULES, SERVER_SPAN


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


def _keeper(
    exported: InMemorySpanExporter, clock: Clock, reader: InMemoryMetricReader | None = None, **policy: float
) -> TailKeeper:
    meter = MeterProvider(metric_readers=[reader] if reader else []).get_meter("t")
    settings = TailPolicy(**{"keep_ratio": 0.0, "latency_threshold_s": 1.0, "max_kept_per_s": 100, **policy})  # type: ignore[arg-type]
    return TailKeeper(
        settings, SimpleSpanProcessor(exported), Resource.create({}), meter, KEEP_RULES, clock=clock
    )


def _request(keeper: TailKeeper, attempts: int = 1, duration_ns: int = 1_000_000) -> None:
    tracer = keeper.tracer("t")
    root = tracer.start_span(SERVER_SPAN, start_time=1_000_000_000)
    parent = trace.set_span_in_context(root)
    for _ in range(attempts):
        tracer.start_span(ATTEMPT_SPAN, parent).end()
    root.end(1_000_000_000 + duration_ns)


def test_a_quick_single_attempt_is_dropped_a_slow_one_and_a_retry_kept(
    exported: InMemorySpanExporter,
) -> None:
    keeper = _keeper(exported, Clock())
    _request(keeper)
    assert exported.get_finished_spans() == ()
    _request(keeper, duration_ns=1_500_000_000)  # above the 1 s threshold
    _request(keeper, attempts=2)  # a retry
    spans = exported.get_finished_spans()
    assert [s.name for s in spans] == [SERVER_SPAN, ATTEMPT_SPAN, SERVER_SPAN, ATTEMPT_SPAN, ATTEMPT_SPAN]
    assert spans[0].end_time is not None and spans[0].start_time is not None
    assert spans[0].end_time - spans[0].start_time == 1_500_000_000  # the recorded times, not export time
    assert spans[1].parent is not None and spans[0].context is not None
    assert spans[1].parent.span_id == spans[0].context.span_id


def test_the_ratio_keeps_about_that_share(exported: InMemorySpanExporter) -> None:
    keeper = _keeper(exported, Clock(), keep_ratio=0.25, max_kept_per_s=10_000)
    for _ in range(2000):
        _request(keeper)
    kept = sum(s.name == SERVER_SPAN for s in exported.get_finished_spans())
    assert 390 <= kept <= 610  # 500 +- 5 standard deviations (~19)


def test_the_bound_keeps_that_many_a_second_and_counts_the_rest(exported: InMemorySpanExporter) -> None:
    clock, reader = Clock(), InMemoryMetricReader()
    keeper = _keeper(exported, clock, reader, max_kept_per_s=3)
    for _ in range(10):
        _request(keeper, attempts=2)
    clock.now += 1.0  # the next second: room again
    for _ in range(2):
        _request(keeper, attempts=2)
    kept = sum(s.name == SERVER_SPAN for s in exported.get_finished_spans())
    assert (kept, keeper.kept, keeper.dropped) == (5, 5, 7)
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        m.name: [(dict(p.attributes or {}), p.value) for p in m.data.data_points]  # type: ignore[union-attr]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert points["authgw.traces.dropped"] == [({"reason": "retry"}, 7)]
    assert points["authgw.traces.kept"] == [({"reason": "retry"}, 5)]


def test_a_child_ending_after_its_kept_root_is_exported_alone(exported: InMemorySpanExporter) -> None:
    """A hedged or late attempt that ends after the authorization: exported when it ends."""
    keeper = _keeper(exported, Clock())
    tracer = keeper.tracer("t")
    root = tracer.start_span(SERVER_SPAN)
    late = tracer.start_span(ATTEMPT_SPAN, trace.set_span_in_context(root))
    root.set_status(trace.StatusCode.ERROR)
    root.end()
    assert [s.name for s in exported.get_finished_spans()] == [SERVER_SPAN]
    late.end()
    assert [s.name for s in exported.get_finished_spans()] == [SERVER_SPAN, ATTEMPT_SPAN]
