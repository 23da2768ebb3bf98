"""Traces, metrics and logs of real processes, received by an OTLP endpoint the test runs.

One scenario (tests/telemetry_scenario.py) sends known PANs through the
primary issuer, a failover to the secondary, stand-in and validation; each test
checks one property of what left the gateway and simulator processes.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import redis
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from authgw.observability import link_from_traceparent
from authgw.v1 import authorization_pb2 as pb
from chaos.otlp_receiver import OtlpReceiver, ReceivedSpan
from chaos.processes import ManagedProcess
from tests.pan_scan import PanScanner
from tests.telemetry_scenario import INVALID_PAN, PANS, Scenario, run_scenario

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER


@pytest.fixture(scope="module")
async def scenario(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess
) -> AsyncIterator[Scenario]:
    """The scenario, run once for the module against a receiver on a free loopback port."""
    async with OtlpReceiver() as receiver:
        yield await run_scenario(tmp_path_factory.mktemp("otel"), receiver, redis_server.port)


def _forbidden(pans: Iterable[str]) -> list[str]:
    """Each PAN and every prefix of it of 5 digits or more: more than the last four may show."""
    return sorted({pan[:k] for pan in pans for k in range(5, len(pan) + 1)}, key=len)


FORBIDDEN = _forbidden((*PANS, INVALID_PAN))
SCANNER = PanScanner((*PANS, INVALID_PAN))


def _leaks(text: str) -> list[str]:
    """A PAN's 5+ leading digits anywhere, or any other form of it (tests/pan_scan.py)."""
    return [f for f in FORBIDDEN if f in text] + [str(f) for f in SCANNER.scan("text", text)]


def _span_strings(span: ReceivedSpan) -> Iterable[str]:
    yield span.name
    yield span.status_message
    yield json.dumps(span.attributes)
    yield json.dumps(span.resource)
    for name, attrs in span.events:
        yield name
        yield json.dumps(attrs)


def _attempts(scenario: Scenario, server: ReceivedSpan) -> list[ReceivedSpan]:
    return sorted(scenario.children(server, "authgw.attempt"), key=lambda a: a.start_ns)


def test_paths_were_taken(scenario: Scenario) -> None:
    """The scan below means something: the PANs went through issuer, failover, stand-in and validation."""
    n = len(PANS)
    assert [(a.source, a.pool) for rid, a in scenario.answers.items() if rid.startswith("iss-")] == [
        (pb.ISSUER, "primary")
    ] * n
    assert [(a.source, a.pool) for rid, a in scenario.answers.items() if rid.startswith("fo-")] == [
        (pb.ISSUER, "secondary")
    ] * n
    assert [a.source for rid, a in scenario.answers.items() if rid.startswith("si-")] == [pb.STAND_IN] * n
    assert scenario.invalid_status == "INVALID_ARGUMENT"


def test_failover_is_one_trace_gateway_to_issuer(scenario: Scenario) -> None:
    """Primary killed: server span -> failed primary attempt, answered secondary attempt -> issuer span."""
    server = scenario.server_span("fo-0")
    assert server.kind == SERVER_KIND
    assert server.attributes["authgw.decision.pool"] == "secondary"
    failed, answered = _attempts(scenario, server)
    assert (failed.attributes["authgw.pool"], answered.attributes["authgw.pool"]) == ("primary", "secondary")
    assert failed.attributes["authgw.attempt.outcome"] in {"not_sent", "unavailable"}
    assert failed.attributes["authgw.attempt.failure_reason"] == failed.attributes["authgw.attempt.outcome"]
    assert failed.attributes["authgw.attempt.failure_detail"]
    assert (answered.attributes["authgw.attempt.outcome"], answered.attributes["authgw.response_code"]) == (
        "answered",
        scenario.answers["fo-0"].response_code,
    )
    (issuer,) = [s for s in scenario.spans if s.parent_span_id == answered.span_id]
    assert (issuer.service, issuer.resource["authgw.member"]) == ("authgw-issuer-sim", "b1")
    assert (issuer.trace_id, issuer.kind) == (server.trace_id, SERVER_KIND)


def test_issuer_spans_continue_gateway_traces(scenario: Scenario) -> None:
    """Every issuer-side span is the child of a gateway attempt span of the same trace."""
    attempts = {(s.trace_id, s.span_id) for s in scenario.spans if s.name == "authgw.attempt"}
    issuer = [s for s in scenario.spans if s.service == "authgw-issuer-sim"]
    assert {s.resource["authgw.member"] for s in issuer} == {"a1", "b1"}
    assert all((s.trace_id, s.parent_span_id) in attempts for s in issuer)


def test_ejection_is_an_event_of_the_request_that_caused_it(scenario: Scenario) -> None:
    """The primary host, dead, is ejected: an authgw.member.ejected event on a failover request's span."""
    events = [
        attrs
        for rid in (f"fo-{i}" for i in range(len(PANS)))
        for name, attrs in scenario.server_span(rid).events
        if name == "authgw.member.ejected"
    ]
    assert [(e["authgw.pool"], e["authgw.member"]) for e in events] == [("primary", "a1")]


def test_standin_tree(scenario: Scenario) -> None:
    """Every host hung: server span -> failed attempts, stand-in decision span -> journal write span."""
    server = scenario.server_span("si-0")
    assert server.attributes["authgw.decision.source"] == "STAND_IN"
    attempts = _attempts(scenario, server)
    assert attempts
    assert "timeout" in {a.attributes["authgw.attempt.outcome"] for a in attempts}
    assert "answered" not in {a.attributes["authgw.attempt.outcome"] for a in attempts}
    (standin,) = scenario.children(server, "authgw.standin.decide")
    assert standin.attributes["authgw.standin.reason"] == "ALL_POOLS_FAILED"
    assert standin.attributes["authgw.standin.response_code"] == scenario.answers["si-0"].response_code
    assert standin.attributes["authgw.standin.rule"] == scenario.answers["si-0"].rule
    assert standin.attributes["authgw.standin.risk_tier"]
    (journal,) = scenario.children(standin, "authgw.standin.journal")
    assert (
        journal.attributes["authgw.journal.kind"] == standin.attributes["authgw.standin.journal"] == "redis"
    )


def test_standin_mode_change_is_traced(scenario: Scenario) -> None:
    """Entering stand-in mode is a span (with event) inside the trace of the request that caused it."""
    modes = [s for s in scenario.spans if s.name == "authgw.standin_mode"]
    (entered,) = [s for s in modes if s.attributes["authgw.standin_mode.active"]]
    assert [name for name, _ in entered.events] == ["standin_mode.on"]
    servers = {s.span_id: s for s in scenario.spans if s.name == "authgw.v1.Authorization/Authorize"}
    assert servers[entered.parent_span_id].attributes["authgw.request_id"].startswith("si-")


def test_journal_entry_carries_the_traceparent(scenario: Scenario) -> None:
    """The journal entry of a stand-in decision holds the server span's traceparent; it makes a link."""
    server = scenario.server_span("si-0")
    decision_id = scenario.answers["si-0"].decision_id
    r = redis.Redis(port=scenario.redis_port, db=2)
    entries = [
        fields
        for key in r.scan_iter("*")
        if r.type(key) == b"stream"
        for _, fields in r.xrange(key)
        if fields.get(b"decision_id") == decision_id.encode()
    ]
    assert len(entries) == 1
    traceparent = entries[0][b"trace_context"].decode()
    assert traceparent.split("-")[1:3] == [server.trace_id, server.span_id]
    link = link_from_traceparent(traceparent)
    assert link is not None
    assert (link.context.trace_id, link.context.span_id) == (
        int(server.trace_id, 16),
        int(server.span_id, 16),
    )


def test_no_pan_in_exported_spans(scenario: Scenario) -> None:
    """No PAN, nor 5+ of its leading digits, in any span payload, attribute, event or status."""
    assert len(scenario.trace_payloads) > 0
    for payload in scenario.trace_payloads:
        assert _leaks(payload.decode("latin-1")) == []
    for span in scenario.spans:
        for text in _span_strings(span):
            assert _leaks(text) == [], (span.name, text)


def _metric_strings(scenario: Scenario) -> Iterable[str]:
    def values(kvs: Any) -> Iterable[str]:
        for kv in kvs:
            yield kv.key
            value: AnyValue = kv.value
            yield str(value).strip()

    for request in _metric_requests(scenario):
        for rm in request.resource_metrics:
            yield from values(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    yield m.name
                    kind = m.WhichOneof("data")
                    for point in getattr(m, kind).data_points:
                        yield from values(point.attributes)


def _metric_requests(scenario: Scenario) -> list[Any]:
    return [metrics_service_pb2.ExportMetricsServiceRequest.FromString(p) for p in scenario.metric_payloads]


def test_no_pan_in_metrics(scenario: Scenario) -> None:
    """Metric names and labels, OTLP and Prometheus, hold no PAN; the documented metrics are there."""
    assert {"authgw.decisions", "authgw.authorization.duration", "authgw.attempts", "authgw.retries"} | {
        "authgw.standin.mode",
        "authgw.journal.depth",
        "authgw.members.ejected",
        "authgw.standin.policy.version",
    } <= scenario.metric_names
    for payload in scenario.metric_payloads:
        assert all(pan.encode() not in payload for pan in PANS)
    for text in _metric_strings(scenario):
        assert _leaks(text) == [], text
    prometheus = scenario.prometheus_text
    assert "authgw_decisions_total" in prometheus
    assert all(pan not in prometheus for pan in PANS)
    for line in prometheus.splitlines():
        labels = re.findall(r'="([^"]*)"', line)
        assert _leaks(" ".join(labels)) == [], line
        assert _leaks(line.split("{", 1)[0].split(" ", 1)[0]) == [], line


def _last_points(scenario: Scenario, name: str) -> dict[str, float]:
    """The last exported value of a gauge, by its `store` attribute."""
    last: dict[str, float] = {}
    for request in _metric_requests(scenario):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != name:
                        continue
                    for point in m.gauge.data_points:
                        store = {kv.key: kv.value.string_value for kv in point.attributes}["store"]
                        last[store] = point.as_int if point.HasField("as_int") else point.as_double
    return last


def test_journal_gauges_show_unsettled_decisions(scenario: Scenario) -> None:
    """With no settlement running, the journal holds every stand-in decision; their age is reported."""
    depth = _last_points(scenario, "authgw.journal.depth")
    assert depth.get("redis", 0) + depth["local"] >= len(PANS)  # local only if Redis missed a deadline
    ages = _last_points(scenario, "authgw.journal.oldest_age")
    assert ages and all(age >= 0 for age in ages.values())


def test_gateway_logs_are_json_without_pan(scenario: Scenario) -> None:
    """Each gateway log line is a JSON object; one in a request carries its trace id; none holds a PAN."""
    lines = [json.loads(line) for line in scenario.gateway_log.splitlines() if line.strip()]
    assert lines
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    traced = [line for line in lines if "trace_id" in line]
    standin_traces = {scenario.server_span(f"si-{i}").trace_id for i in range(len(PANS))}
    assert any(line["trace_id"] in standin_traces for line in traced)
    assert all(re.fullmatch(r"[0-9a-f]{32}", line["trace_id"]) for line in traced)
    assert all(re.fullmatch(r"[0-9a-f]{16}", line["span_id"]) for line in traced)
    for line in lines:
        text = " ".join(str(v) for k, v in line.items() if k not in {"trace_id", "span_id"})
        assert _leaks(text) == [], line
    assert all(pan not in scenario.gateway_log for pan in PANS)


def test_leak_scan_catches_a_leak() -> None:
    """The scanner is not blind: a PAN, its BIN, BIN and last four masked, its middle digits are leaks;
    the last four alone is not."""
    pan = PANS[0]
    assert _leaks(f"pan={pan}")
    assert _leaks(f"bin {pan[:6]}")
    assert _leaks(f"card {pan[:6]}******{pan[-4:]}")
    assert _leaks(f"middle={pan[6:-4]}")
    assert _leaks(f"card …{pan[-4:]}") == []
