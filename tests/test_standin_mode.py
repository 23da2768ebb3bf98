"""Stand-in mode's prober: it ends stand-in mode whatever goes wrong in a probe round."""

from __future__ import annotations

from gateway.member import Member
from gateway.router import Router
from gateway.standin_mode import StandInMode
from standin.types import Reason
from tests.gateway_fixtures import gateway_config
from tests.helpers import assert_eventually


class _FlakyProber(StandInMode):
    """A prober whose first rounds hit a bug (not an RPC error), then find a SERVING member."""

    def __init__(self, router: Router, failing_rounds: int) -> None:
        super().__init__(router, probe_interval_s=0.01, good_rounds_to_leave=2)
        self.failing_rounds = failing_rounds
        self.rounds = 0

    async def _probe_round(self) -> list[Member]:
        self.rounds += 1
        if self.rounds <= self.failing_rounds:
            raise RuntimeError("a bug in a probe round")
        return [m for p in self._router.pools for m in p.members.values()]


async def test_an_unexpected_error_in_a_probe_does_not_leave_standin_mode_on() -> None:
    """A probe round that raises (not an RPC error) counts as bad; later good rounds end stand-in mode."""
    router = Router(gateway_config([("primary", ["127.0.0.1:9"])]))
    mode = _FlakyProber(router, failing_rounds=3)
    try:
        for pool in router.pools:  # every pool failing: the gateway enters stand-in mode
            pool.drained = True
        mode.maybe_enter(Reason.ALL_POOLS_FAILED)
        assert mode.active
        for pool in router.pools:
            pool.drained = False

        def left() -> None:
            assert not mode.active

        await assert_eventually(left, timeout_s=5.0)
        assert mode.rounds >= 5  # three failed rounds, then two good ones
    finally:
        await mode.close()
        await router.close()


async def test_close_ends_the_prober_and_returns() -> None:
    """close() stops the probe task while in stand-in mode; calling it twice is fine."""
    router = Router(gateway_config([("primary", ["127.0.0.1:9"])]))
    mode = _FlakyProber(router, failing_rounds=10**9)
    for pool in router.pools:
        pool.drained = True
    mode.maybe_enter(Reason.ALL_POOLS_FAILED)
    await mode.close()
    await mode.close()
    assert not mode.active
    await router.close()


class _GoodProber(_FlakyProber):
    """Every probe round finds every member SERVING (a health check does not see slow Authorizes)."""

    def __init__(self, router: Router, clock: list[float]) -> None:
        StandInMode.__init__(
            self, router, probe_interval_s=0.01, good_rounds_to_leave=2, max_rounds_to_leave=8,
            relapse_window_s=5.0, clock=lambda: clock[0],
        )  # fmt: skip
        self.failing_rounds = 0
        self.rounds = 0


async def _period(router: Router, mode: _GoodProber) -> int:
    """Enter stand-in mode (every pool drained), let the probes end it: the rounds it took."""
    for pool in router.pools:
        pool.drained = True
    mode.maybe_enter(Reason.ALL_POOLS_FAILED)
    assert mode.active
    for pool in router.pools:
        pool.drained = False
    before = mode.rounds

    def left() -> None:
        assert not mode.active

    await assert_eventually(left, timeout_s=5.0)
    return mode.rounds - before


async def test_relapses_double_the_good_rounds_needed_to_leave() -> None:
    """Entering again soon after leaving (probes pass, real attempts fail) doubles the rounds, up to the cap;
    out of stand-in mode longer than the relapse window, the base count again."""
    router = Router(gateway_config([("primary", ["127.0.0.1:9"])]))
    clock = [1000.0]
    mode = _GoodProber(router, clock)
    try:
        assert await _period(router, mode) == 2
        clock[0] += 1.0  # the pool's attempts time out again a second later
        assert await _period(router, mode) == 4
        clock[0] += 1.0
        assert await _period(router, mode) == 8
        clock[0] += 1.0
        assert await _period(router, mode) == 8  # the cap
        clock[0] += 6.0  # stayed with the issuer longer than the window: a new outage
        assert await _period(router, mode) == 2
    finally:
        await mode.close()
        await router.close()
