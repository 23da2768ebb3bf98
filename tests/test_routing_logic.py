"""Pure routing logic: outlier ejection, pool health windows, retry budget (no network)."""

from __future__ import annotations

from datetime import timedelta

from gateway.config import DeclineStormConfig, OutlierConfig
from gateway.outlier import Ejection, EjectionState
from gateway.pool_health import Outcome, PoolHealth, PoolVerdict
from gateway.retry_budget import RetryBudget

S = timedelta(seconds=1)
OUTLIER = OutlierConfig(
    consecutive_failures=3, base_ejection=5 * S, max_ejection=12 * S, max_ejection_share=0.5
)
STORM = DeclineStormConfig(
    window=5 * S, min_requests=10, consecutive_failures=100, threshold=0.5, baseline_05=0.1, cooloff=2 * S
)
FAST = DeclineStormConfig(window=5 * S, min_requests=10, consecutive_failures=5, threshold=0.5, cooloff=2 * S)


def test_ejected_after_consecutive_failures() -> None:
    """Three failures in a row eject the member; two do not."""
    e = Ejection(OUTLIER)
    assert not e.on_failure(0.0, True)
    assert not e.on_failure(0.1, True)
    assert e.on_failure(0.2, True)
    assert e.state(1.0) is EjectionState.EJECTED
    assert not e.usable(1.0)


def test_success_resets_consecutive_count() -> None:
    """A success between failures prevents ejection."""
    e = Ejection(OUTLIER)
    e.on_failure(0.0, True)
    e.on_failure(0.1, True)
    e.on_success(0.2)
    assert not e.on_failure(0.3, True)


def test_half_open_admits_one_trial() -> None:
    """After the ejection time exactly one trial request is admitted."""
    e = Ejection(OUTLIER)
    for t in (0.0, 0.1, 0.2):
        e.on_failure(t, True)
    assert e.usable(5.3)
    e.on_pick(5.3)
    assert not e.usable(5.3)
    e.on_success(5.4)
    assert e.state(5.4) is EjectionState.HEALTHY


def test_failed_trial_doubles_ejection_capped() -> None:
    """A failed trial ejects again for twice as long, capped at max_ejection."""
    e = Ejection(OUTLIER)
    for t in (0.0, 0.1, 0.2):
        e.on_failure(t, True)
    e.on_pick(5.3)
    assert e.on_failure(5.3, True)
    assert e.ejected_until == 5.3 + 10.0
    e.on_pick(15.4)
    e.on_failure(15.4, True)
    assert e.ejected_until == 15.4 + 12.0


def test_eject_refused_when_share_reached() -> None:
    """When the pool may not lose another member, failures do not eject."""
    e = Ejection(OUTLIER)
    for t in (0.0, 0.1, 0.2, 0.3):
        assert not e.on_failure(t, False)
    assert e.state(0.4) is EjectionState.HEALTHY


def test_straggler_failure_does_not_extend_ejection() -> None:
    """Failures of requests sent before the ejection do not re-eject."""
    e = Ejection(OUTLIER)
    for t in (0.0, 0.1, 0.2):
        e.on_failure(t, True)
    until = e.ejected_until
    assert not e.on_failure(0.3, True)
    assert e.ejected_until == until


def test_decline_storm_detected() -> None:
    """A window dominated by 96 declines gives a DECLINE_STORM verdict."""
    h = PoolHealth(STORM)
    for i in range(12):
        h.record(i * 0.01, Outcome.SYSTEM_DECLINE)
    assert h.verdict is PoolVerdict.DECLINE_STORM
    assert not h.admits(0.2)


def test_errors_mark_pool_failing() -> None:
    """A window dominated by timeouts gives a FAILING verdict."""
    h = PoolHealth(STORM)
    for i in range(12):
        h.record(i * 0.01, Outcome.ERROR)
    assert h.verdict is PoolVerdict.FAILING


def test_consecutive_failures_fail_pool_despite_good_window() -> None:
    """Five timeouts in a row fail a pool at once, though the window holds many good answers."""
    h = PoolHealth(FAST)
    for i in range(300):
        h.record(i * 0.01, Outcome.GOOD)
    for i in range(4):
        h.record(3.0 + i * 0.01, Outcome.ERROR)
    assert h.verdict is PoolVerdict.OK
    h.record(3.05, Outcome.ERROR)
    assert h.verdict is PoolVerdict.FAILING


def test_consecutive_count_broken_by_good_answer() -> None:
    """A good answer between failures resets the consecutive count."""
    h = PoolHealth(FAST)
    for i in range(300):
        h.record(i * 0.01, Outcome.GOOD)
    for t in (3.0, 3.01, 3.02, 3.03):
        h.record(t, Outcome.ERROR)
    h.record(3.04, Outcome.GOOD)
    h.record(3.05, Outcome.ERROR)
    assert h.verdict is PoolVerdict.OK


def test_baseline_05_is_not_a_storm() -> None:
    """05 declines at their usual rate do not fail the pool."""
    h = PoolHealth(STORM)
    for i in range(100):
        h.record(i * 0.01, Outcome.DECLINE_05 if i % 10 == 0 else Outcome.GOOD)
    assert h.verdict is PoolVerdict.OK


def test_05_far_above_baseline_is_a_storm() -> None:
    """A pool answering 05 to everyone is in a decline storm."""
    h = PoolHealth(STORM)
    for i in range(20):
        h.record(i * 0.01, Outcome.DECLINE_05)
    assert h.verdict is PoolVerdict.DECLINE_STORM


def test_too_few_samples_no_verdict() -> None:
    """Below min_requests no verdict is reached."""
    h = PoolHealth(STORM)
    for i in range(9):
        h.record(i * 0.01, Outcome.ERROR)
    assert h.verdict is PoolVerdict.OK


def test_old_outcomes_leave_the_window() -> None:
    """Errors older than the window do not count."""
    h = PoolHealth(STORM)
    for i in range(8):
        h.record(i * 0.01, Outcome.ERROR)
    for i in range(8):
        h.record(10.0 + i * 0.01, Outcome.ERROR)
    assert h.verdict is PoolVerdict.OK


def test_failing_pool_trial_then_recovery() -> None:
    """After the cool-off one trial is admitted; a good answer restores the pool."""
    h = PoolHealth(STORM)
    for i in range(12):
        h.record(i * 0.01, Outcome.ERROR)
    assert not h.admits(1.0)
    assert h.admits(2.2)
    h.on_pick(2.2)
    assert not h.admits(2.2)
    h.record(2.3, Outcome.GOOD)
    assert h.verdict is PoolVerdict.OK
    assert h.admits(2.3)


def test_failed_trial_doubles_cooloff() -> None:
    """A failed trial keeps the pool out for twice the previous cool-off."""
    h = PoolHealth(STORM)
    for i in range(12):
        h.record(i * 0.01, Outcome.ERROR)
    h.on_pick(2.2)
    h.record(2.3, Outcome.ERROR)
    assert not h.admits(6.2)
    assert h.admits(6.4)


def test_retry_budget_minimum() -> None:
    """With few requests in flight, at least retry_budget_min retries are allowed."""
    b = RetryBudget(0.2, 3)
    b.request_started()
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]
    b.release()
    assert b.try_acquire()


def test_retry_budget_ratio() -> None:
    """With 100 requests in flight, 20 concurrent retries are allowed, not 21."""
    b = RetryBudget(0.2, 3)
    for _ in range(100):
        b.request_started()
    assert sum(b.try_acquire() for _ in range(30)) == 20
    assert b.denied == 10
