"""Admission control: the adaptive concurrency limit (deterministic) and its [admission] config."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.admission import AdaptiveLimit, AdmissionConfig
from gateway.config import ConfigError
from tests.gateway_fixtures import gateway_config

_CFG = AdmissionConfig(initial_limit=10, min_limit=4, max_limit=12, lag_target=timedelta(milliseconds=20))


def _filled(limit: AdaptiveLimit, n: int) -> None:
    for _ in range(n):
        assert limit.try_acquire()


def test_authorizations_past_the_limit_are_refused_and_counted() -> None:
    """At the limit the next authorization is refused; one released makes room for one."""
    limit = AdaptiveLimit(_CFG)
    _filled(limit, 10)
    assert not limit.try_acquire()
    assert (limit.in_flight, limit.refused) == (10, 1)
    limit.release()
    assert limit.try_acquire()
    assert not limit.try_acquire()
    assert limit.refused == 2


def test_a_late_loop_shrinks_the_limit_multiplicatively_down_to_the_minimum() -> None:
    """Each sample over the lag target multiplies the limit by backoff, never below min_limit."""
    limit = AdaptiveLimit(_CFG)
    limit.on_lag(0.021)
    assert limit.limit == pytest.approx(8.0)
    _filled(limit, 8)
    assert not limit.try_acquire()  # the new limit holds for what arrives next
    for _ in range(10):
        limit.on_lag(0.5)
    assert limit.limit == 4.0


def test_an_on_time_loop_grows_the_limit_only_when_it_was_used() -> None:
    """Under the lag target: +increase per sample if half the limit was in flight, else unchanged."""
    limit = AdaptiveLimit(_CFG)
    _filled(limit, 4)  # less than half of 10
    limit.on_lag(0.0)
    assert limit.limit == 10.0
    _filled(limit, 1)  # 5 in flight: half used
    limit.on_lag(0.0)
    assert limit.limit == 12.0  # +2
    limit.on_lag(0.019)
    assert limit.limit == 12.0  # max_limit


def test_the_peak_since_the_last_sample_counts_not_the_moment() -> None:
    """Requests that came and went between two samples still show the limit was used."""
    limit = AdaptiveLimit(_CFG)
    _filled(limit, 6)
    for _ in range(6):
        limit.release()
    limit.on_lag(0.0)
    assert limit.limit == 12.0
    limit.on_lag(0.0)  # nothing in flight since: no growth
    assert limit.limit == 12.0


def test_admission_defaults_and_section() -> None:
    """[admission] is optional; its keys are read with units."""
    assert gateway_config([("p", ["127.0.0.1:1"])]).admission == AdmissionConfig()
    cfg = gateway_config(
        [("p", ["127.0.0.1:1"])],
        extra={"admission": {"enabled": True, "max_limit": 50, "min_limit": 5, "initial_limit": 20}},
    )
    assert (cfg.admission.enabled, cfg.admission.max_limit, cfg.admission.initial_limit) == (True, 50, 20)


def test_hard_limit_alone_when_the_adaptive_limit_is_off() -> None:
    """With enabled = false, grpc's hard cap may be anything: there is no max_limit to stay above."""
    cfg = gateway_config([("p", ["127.0.0.1:1"])], extra={"admission": {"enabled": False, "hard_limit": 10}})
    assert (cfg.admission.enabled, cfg.admission.hard_limit) == (False, 10)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"enabled": True, "hard_limit": 100}, "admission.hard_limit"),  # not above max_limit (5000)
        ({"backoff": 1.5}, "admission.backoff"),
        ({"initial_limit": 1}, "admission.initial_limit"),  # below min_limit
        ({"lag_target": 20}, "admission.lag_target"),  # no unit
        ({"limit": 10}, "admission.limit"),  # unknown
    ],
)
def test_bad_admission_settings_name_the_key(section: dict[str, object], key: str) -> None:
    """A wrong [admission] value is a config error naming its key."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        gateway_config([("p", ["127.0.0.1:1"])], extra={"admission": section})
