"""`authgw top`'s arithmetic over two scrapes: rates, counter resets, p99 from histogram buckets."""

from __future__ import annotations

import pytest

from gateway.top.model import gateway_view
from gateway.top.rates import quantile, rates
from gateway.top.scrape import Scrape, parse

URL = "http://gw/metrics"
H = "authgw_authorization_duration_milliseconds"


def _histogram(source: str, buckets: dict[str, float]) -> str:
    lines = [f'{H}_bucket{{le="{le}",source="{source}"}} {n}' for le, n in buckets.items()]
    total = buckets["+Inf"]
    lines += [f'{H}_count{{source="{source}"}} {total}', f'{H}_sum{{source="{source}"}} {total}']
    return "\n".join(lines)


def _scrape(at: float, body: str) -> Scrape:
    head = f"# TYPE {H} histogram\n# TYPE authgw_decisions counter\n# TYPE authgw_requests counter\n"
    return parse(URL, head + body + "\n", at)


def _decisions(issuer_00: float, standin_00: float, standin_51: float) -> str:
    return "\n".join(
        [
            f'authgw_decisions_total{{response_code="00",source="ISSUER"}} {issuer_00}',
            f'authgw_decisions_total{{response_code="00",source="STAND_IN"}} {standin_00}',
            f'authgw_decisions_total{{response_code="51",source="STAND_IN"}} {standin_51}',
        ]
    )


def test_rates_by_labels_over_the_interval() -> None:
    """Increase divided by the time between the scrapes, per (source, code) and summed per source."""
    prev = _scrape(10.0, _decisions(100, 0, 0))
    cur = _scrape(12.0, _decisions(140, 30, 4))
    by_code = rates(prev, cur, "authgw_decisions_total", ("source", "response_code"))
    assert by_code == {("ISSUER", "00"): 20.0, ("STAND_IN", "00"): 15.0, ("STAND_IN", "51"): 2.0}
    assert rates(prev, cur, "authgw_decisions_total", ("source",)) == {("ISSUER",): 20.0, ("STAND_IN",): 17.0}


def test_a_series_new_in_the_second_scrape_counts_from_zero() -> None:
    """A code first seen in the second scrape: all of its value happened in the interval."""
    prev = _scrape(0.0, 'authgw_decisions_total{response_code="00",source="ISSUER"} 5')
    cur = _scrape(1.0, _decisions(5, 7, 0))
    assert rates(prev, cur, "authgw_decisions_total", ("source",)) == {("ISSUER",): 0.0, ("STAND_IN",): 7.0}


def test_a_counter_reset_counts_its_new_value() -> None:
    """A gateway restarted between the scrapes: its counter went down; the rate is never negative."""
    prev = _scrape(0.0, _decisions(1000, 0, 0))
    cur = _scrape(2.0, _decisions(60, 0, 0))
    assert rates(prev, cur, "authgw_decisions_total", ("source",))[("ISSUER",)] == 30.0


def test_p99_interpolates_inside_the_bucket_of_the_rank() -> None:
    """100 answers in the interval, 98 under 5 ms, 2 between 5 and 10: p99 is 7.5 ms, as
    histogram_quantile computes it; the 1,000 answers before the interval (all under 1 ms) are out."""
    prev = _scrape(0.0, _histogram("ISSUER", {"1": 1000, "5": 1000, "10": 1000, "+Inf": 1000}))
    cur = _scrape(1.0, _histogram("ISSUER", {"1": 1000, "5": 1098, "10": 1100, "+Inf": 1100}))
    assert quantile(prev, cur, 0.99, H) == pytest.approx(7.5)
    assert quantile(prev, cur, 0.5, H) == pytest.approx(1 + 4 * 50 / 98)


def test_p99_over_several_sources_and_one_source() -> None:
    """p99 of all answers sums the sources' buckets; a source can be asked alone."""
    prev = _scrape(0.0, _histogram("ISSUER", {"2": 0, "400": 0, "+Inf": 0}) + "\n"
                   + _histogram("STAND_IN", {"2": 0, "400": 0, "+Inf": 0}))  # fmt: skip
    cur = _scrape(1.0, _histogram("ISSUER", {"2": 99, "400": 99, "+Inf": 99}) + "\n"
                  + _histogram("STAND_IN", {"2": 0, "400": 101, "+Inf": 101}))  # fmt: skip
    assert quantile(prev, cur, 0.99, H, source="ISSUER") == pytest.approx(2 * 0.99)
    assert quantile(prev, cur, 0.99, H, source="STAND_IN") == pytest.approx(2 + 398 * 0.99)
    assert quantile(prev, cur, 0.99, H) == pytest.approx(2 + 398 * (198 - 99) / 101)


def test_p99_past_the_last_bound_is_that_bound_and_no_answers_is_none() -> None:
    """Ranks in +Inf report the highest finite bound; an interval with no answer has no p99 (not 0)."""
    prev = _scrape(0.0, _histogram("ISSUER", {"5000": 0, "+Inf": 0}))
    cur = _scrape(1.0, _histogram("ISSUER", {"5000": 0, "+Inf": 10}))
    assert quantile(prev, cur, 0.99, H) == 5000.0
    assert quantile(cur, _scrape(2.0, _histogram("ISSUER", {"5000": 0, "+Inf": 10})), 0.99, H) is None


def test_gateway_view_reads_mode_pools_and_journal() -> None:
    """The mode whose gauge is 1, each pool with its verdict and members (0s for an empty pool)."""
    body = "\n".join(
        [
            'authgw_routing_mode{mode="issuer"} 0',
            'authgw_routing_mode{mode="stand-in"} 1',
            'authgw_pool_verdict{pool="primary",verdict="ok"} 0',
            'authgw_pool_verdict{pool="primary",verdict="failing"} 1',
            'authgw_pool_members{pool="primary",state="ejected"} 2',
            'authgw_pool_members{pool="primary",state="healthy"} 0',
            'authgw_pool_members{pool="secondary",state="healthy"} 0',
            'authgw_member_state{member="a1",pool="primary",state="ejected"} 1',
            'authgw_member_state{member="a1",pool="primary",state="healthy"} 0',
            'authgw_journal_depth{store="redis"} 42',
            'target_info{service_instance_id="gw-7"} 1',
        ]
    )
    view = gateway_view(_scrape(0.0, body), _scrape(1.0, body))
    assert (view.instance, view.mode) == ("gw-7", "stand-in")
    primary, secondary = view.pools
    assert (primary.verdict, primary.members["ejected"]) == ("failing", 2)
    assert primary.member_states == {"a1": "ejected"}
    assert (secondary.name, sum(secondary.members.values()), secondary.verdict) == ("secondary", 0, None)
    assert view.journal_depth == {"redis": 42}


def test_an_unreadable_gateway_is_shown_with_its_error() -> None:
    """A scrape that failed gives a view with the error, not a missing row."""
    failed = Scrape(URL, 1.0, error="ConnectionRefusedError: refused")
    view = gateway_view(_scrape(0.0, ""), failed)
    assert view.error == "ConnectionRefusedError: refused"


def test_exposure_is_read_by_its_own_labels() -> None:
    """Exposure and budget series keep each label set apart (one window, two currencies)."""
    body = "\n".join(
        [
            'authgw_standin_exposure{currency="EUR",otel_scope_name="authgw",window="1h"} 500',
            'authgw_standin_exposure{currency="GBP",otel_scope_name="authgw",window="1h"} 70',
            'authgw_standin_exposure_budget{currency="EUR",otel_scope_name="authgw",window="1h"} 1000',
        ]
    )
    view = gateway_view(_scrape(0.0, body), _scrape(1.0, body))
    assert view.exposure == {"currency=EUR window=1h": 500, "currency=GBP window=1h": 70}
    assert view.exposure_budget == {"currency=EUR window=1h": 1000}


def test_settlement_and_requests_rates_in_the_view() -> None:
    """Advices settled per second by outcome, requests per second by edge, answers by (source, code)."""

    def body(settled: int, grpc: int) -> str:
        return "\n".join(
            [
                "# TYPE authgw_settlement_advices counter",
                f'authgw_settlement_advices_total{{outcome="acknowledged"}} {settled}',
                f'authgw_requests_total{{edge="grpc"}} {grpc}',
                _decisions(grpc, 0, 0),
            ]
        )

    view = gateway_view(_scrape(0.0, body(10, 100)), _scrape(0.5, body(60, 150)))
    assert view.settlement == {"acknowledged": 100.0}
    assert view.requests == {"grpc": 100.0}
    assert view.answers_by_source == {"ISSUER": 100.0, "STAND_IN": 0.0}
