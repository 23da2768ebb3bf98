"""The Grafana dashboard and the alert rules read only series a real gateway exports.

A gateway runs the paths an operator watches (tests/deploy_scenario.py); its
Prometheus scrape is the reference. Every metric name, every label a query
matches, groups by or shows in a legend, and every literal label value it
matches must be in that scrape, or the panel stays empty and the alert never
fires.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

from tests.deploy_promql import Query, Scrape, dashboard_queries, panels, problems, read, rule_queries
from tests.deploy_scenario import run_scenario

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy/grafana/authgw.json"
RULES = ROOT / "deploy/prometheus/authgw-alerts.yml"

# The only names the rules may use that today's gateway does not export. Each coming metric is
# given as the product will create it (OpenTelemetry name, unit, attributes): the test below
# turns it into Prometheus names through the real exporter, so the rules' names stay checked.
# When a metric lands, delete its line here: the gateway's scrape then checks it.
COMING: dict[str, tuple[str, str, tuple[str, ...]]] = {}
NOT_GATEWAY = {"up"}  # one series per scrape target, made by Prometheus itself


@pytest.fixture(scope="module")
async def scrape(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scrape]:
    """The scrape of a gateway that went through issuer, reversal, forced stand-in and refusal."""
    yield Scrape.parse(await run_scenario(tmp_path_factory.mktemp("deploy")))


def _rules() -> list[tuple[str, str, Query]]:
    return list(rule_queries(RULES))


def _recorded() -> set[str]:
    return {name for kind, name, _ in _rules() if kind == "record"}


def test_dashboard_reads_only_exported_series(scrape: Scrape) -> None:
    """Every dashboard query and variable: metric names, labels and literal values are in the scrape."""
    queries = list(dashboard_queries(read(DASHBOARD)))
    assert len(queries) > 20
    found = [p for q in queries for p in problems(q, scrape, not_exported=NOT_GATEWAY)]
    assert found == []


def test_alert_rules_read_only_exported_series(scrape: Scrape) -> None:
    """Every rule expression: the same, but for `up` and the coming metrics (COMING)."""
    found = [
        p
        for _, _, q in _rules()
        for p in problems(q, scrape, not_exported=NOT_GATEWAY | COMING.keys(), recorded=_recorded())
    ]
    assert found == []


def _coming_scrape() -> Scrape:
    """The coming metrics as the OpenTelemetry Prometheus exporter will name them."""
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    meter = provider.get_meter("authgw.gateway")
    for otel_name, unit, labels in COMING.values():

        def observe(options: CallbackOptions, labels: tuple[str, ...] = labels) -> list[Observation]:
            return [Observation(1.0, {label: "x" for label in labels})]

        meter.create_observable_gauge(otel_name, [observe], unit=unit)
    try:
        return Scrape.parse(generate_latest(registry).decode())
    finally:
        provider.shutdown()


def test_rules_name_the_coming_metrics_as_the_exporter_will(scrape: Scrape) -> None:
    """Rules on coming metrics use the exporter's names and labels for them (unit "d" adds _days)."""
    coming = _coming_scrape()
    assert COMING.keys() <= coming.series.keys()
    both = Scrape({**scrape.series, **coming.series})
    users = [q for _, _, q in _rules() if q.metrics & COMING.keys()]
    assert {m for q in users for m in q.metrics} >= COMING.keys()
    assert [p for q in users for p in problems(q, both, not_exported=NOT_GATEWAY)] == []


def test_dashboard_has_no_panel_on_coming_metrics() -> None:
    """No panel reads a metric that does not exist yet (certificates, exposure)."""
    used = {m for q in dashboard_queries(read(DASHBOARD)) for m in q.metrics}
    assert used & COMING.keys() == set()


def test_checker_reports_what_the_scrape_lacks(scrape: Scrape) -> None:
    """The check can fail: an unknown metric, label, label value and grouping label are each reported."""
    cases = {
        "sum(rate(authgw_decisionz_total[5m]))": "metric 'authgw_decisionz_total'",
        'authgw_decisions_total{colour="red"}': "no label 'colour'",
        'max(authgw_journal_depth{store="dead_letter"})': "{store='dead_letter'}",
        'authgw_pool_verdict{verdict=~"failing|stormy"}': "{verdict='stormy'}",
        "sum by (colour) (rate(authgw_decisions_total[5m]))": "label 'colour'",
    }
    for expr, expected in cases.items():
        (found,) = problems(Query("probe", expr), scrape)
        assert expected in found, (expr, found)
    assert problems(Query("probe", "x", "{{colour}}"), Scrape({"x": {}})) != []


def test_rules_are_all_read() -> None:
    """The line reader finds as many rules as promtool, each with at least one selector."""
    rules = _rules()
    assert all(q.selectors for _, _, q in rules)
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.skip("promtool missing: `make deploy-check` installs it")
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=True)
    found = re.search(r"SUCCESS: (\d+) rules found", out.stdout)
    assert found is not None, out.stdout
    assert len(rules) == int(found.group(1))


def test_dashboard_answers_what_operators_ask() -> None:
    """Panels for answers, latency, pools, stand-in, journal, dead letters, advices, reversals, refusals,
    routing mode, requests by edge, members by state, stand-in exposure and policy version, admission."""
    dashboard = read(DASHBOARD)
    used = {m for q in dashboard_queries(dashboard) for m in q.metrics}
    assert {
        "authgw_decisions_total",
        "authgw_authorization_duration_milliseconds_bucket",
        "authgw_pool_verdict",
        "authgw_members_ejected",
        "authgw_pool_drained",
        "authgw_standin_mode",
        "authgw_journal_depth",
        "authgw_journal_oldest_age_seconds",
        "authgw_settlement_advices_total",
        "authgw_reversals_total",
        "authgw_refusals_total",
        "authgw_routing_mode",
        "authgw_requests_total",
        "authgw_pool_members",
        "authgw_standin_exposure",
        "authgw_standin_exposure_budget",
        "authgw_standin_policy_version",
        "authgw_admission_refused_total",
        "authgw_admission_limit",
    } <= used
    quantiles = {q.expr.split(",")[0] for q in dashboard_queries(dashboard) if "histogram_quantile" in q.expr}
    assert quantiles == {f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")}


def test_dashboard_is_portable() -> None:
    """A current schema, a Prometheus datasource variable used by every panel, instance and pool variables."""
    dashboard = read(DASHBOARD)
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    assert {"instance", "pool"} <= variables.keys()
    source = {"type": "prometheus", "uid": "${datasource}"}
    graphs = [p for p in panels(dashboard) if p["type"] != "row"]
    assert all(p["datasource"] == source for p in graphs)
    assert all(t["datasource"] == source for p in graphs for t in p["targets"])
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_every_link_certificate_has_its_expiry(scrape: Scrape) -> None:
    """The gateway of the TLS topology exports the days left of each certificate it holds: its server
    certificate and its client certificates to issuers, etcd and Redis (the expiry alerts read them)."""
    labels = scrape.series["authgw_certificate_days_left_days"]["certificate"]
    assert labels == {"server", "issuer_client", "etcd_client", "redis_client"}
