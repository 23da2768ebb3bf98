"""Settlement pieces without servers: pacing, the breaker, settings, the protobuf advice, status codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from test_standin_support import request

from authgw.config import Section
from authgw.v1 import authorization_pb2 as pb
from gateway.settlement.sender import _outcome, to_pb_advice
from standin import ConfigError, JournalKind, Reason, ResponseCode, StandInDecision
from standin.settlement.advice import Advice, SendOutcome
from standin.settlement.pacing import Pacer, Pause
from standin.settlement.settings import SettlementSettings, load_settlement_settings

SETTINGS = SettlementSettings(
    rate_per_s=1000,
    min_rate_per_s=10,
    latency_target=timedelta(milliseconds=100),
    error_threshold=0.1,
    pacing_window=timedelta(seconds=1),
    pause_after_failures=3,
    pause=timedelta(seconds=1),
    pause_max=timedelta(seconds=4),
)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _window(pacer: Pacer, clock: Clock, *, latency_s: float, answered: bool, n: int = 10) -> None:
    for _ in range(n):
        pacer.record(latency_s, answered)
    clock.now += 1.01
    pacer.record(latency_s, answered)  # closes the window


def test_pacer_halves_the_rate_when_the_issuer_slows() -> None:
    """A window whose mean latency passes the target halves the rate."""
    clock = Clock()
    pacer = Pacer(SETTINGS, clock)
    _window(pacer, clock, latency_s=0.3, answered=True)
    assert pacer.rate == 500


def test_pacer_halves_the_rate_on_errors_and_keeps_a_floor() -> None:
    """Failing windows halve the rate down to min_rate_per_s, never below."""
    clock = Clock()
    pacer = Pacer(SETTINGS, clock)
    for _ in range(10):
        _window(pacer, clock, latency_s=0.01, answered=False)
    assert pacer.rate == 10


def test_pacer_grows_back_a_tenth_of_the_ceiling_per_good_window() -> None:
    """After a back-off, each good window adds 10 % of the configured rate, up to it."""
    clock = Clock()
    pacer = Pacer(SETTINGS, clock)
    _window(pacer, clock, latency_s=0.5, answered=True)
    _window(pacer, clock, latency_s=0.01, answered=True)
    assert pacer.rate == 600
    for _ in range(10):
        _window(pacer, clock, latency_s=0.01, answered=True)
    assert pacer.rate == 1000


def test_pacer_respaces_turns_taken_at_a_slow_rate_when_the_rate_grows() -> None:
    """50 turns taken at 10/s reach ~5 s ahead; a good window (10 -> 110/s) re-spaces what is left of
    them at the new rate, so the next turn comes in well under a second, not after the slow queue."""
    clock = Clock()
    pacer = Pacer(SETTINGS, clock)
    for _ in range(7):
        _window(pacer, clock, latency_s=0.01, answered=False)
    assert pacer.rate == 10
    turns = [pacer.reserve() for _ in range(50)]
    assert turns[-1] - turns[0] == pytest.approx(4.9)  # 0.1 s apart
    _window(pacer, clock, latency_s=0.01, answered=True)
    assert pacer.rate == 110
    left_s = turns[-1] + 0.1 - clock.now  # what is left of the slow queue: 3.74 s at 10/s
    assert left_s > 3
    assert pacer.reserve() - clock.now == pytest.approx(left_s * 10 / 110)


def test_pause_trips_after_consecutive_failures_and_doubles() -> None:
    """N failures in a row pause settlement; a failed trial doubles the pause; an answer ends it."""
    clock = Clock()
    pause = Pause(SETTINGS, clock)
    pause.failed()
    pause.failed()
    assert not pause.active()
    pause.failed()
    assert pause.active() and pause.remaining() == timedelta(seconds=1)
    clock.now += 1.5
    assert not pause.active() and pause.tripped
    pause.failed()  # the trial failed
    assert pause.remaining() == timedelta(seconds=2)
    clock.now += 3
    pause.answered()
    assert not pause.active() and not pause.tripped


def test_settings_name_an_unknown_key() -> None:
    """A typo in [settlement] is refused with the file and the key."""
    with pytest.raises(ConfigError) as info:
        load_settlement_settings(Section("gw.toml", "settlement", {"rate_per_sec": 10}))
    assert "gw.toml: settlement.rate_per_sec" in str(info.value)


def test_settings_refuse_a_send_deadline_longer_than_half_a_lease() -> None:
    """advise_timeout must fit twice in the lease TTL, or a send could outlive the lease."""
    with pytest.raises(ConfigError, match="advise_timeout"):
        load_settlement_settings(
            Section("gw.toml", "settlement", {"advise_timeout": "6s", "lease_ttl": "10s"})
        )


def test_advice_carries_the_request_and_the_decision() -> None:
    """to_pb_advice: PAN, amount, channel and the decision, merchant country "ZZ" back to unknown."""
    req = request("4111111111111111", amount_minor=4200, merchant_country="ZZ")
    decided = datetime(2025, 8, 30, 17, 30, tzinfo=UTC)
    decision = StandInDecision(
        "d" * 32, req.request_id, True, ResponseCode.APPROVED, "A1B2C3", "approved", "low",
        Reason.ALL_POOLS_FAILED, decided, "gw-1", JournalKind.REDIS,
    )  # fmt: skip
    advice = to_pb_advice(Advice(req, decision, "t" * 64, "", 0, "1-0"))
    assert (advice.decision_id, advice.decision, advice.response_code) == ("d" * 32, pb.APPROVED, "00")
    assert (advice.request.pan, advice.request.amount_minor) == ("4111111111111111", 4200)
    assert advice.request.channel == pb.POS_CHIP and advice.request.merchant_country == ""
    assert advice.reason == pb.ALL_POOLS_FAILED and advice.gateway_instance == "gw-1"
    assert advice.decided_at.ToDatetime(tzinfo=UTC) == decided


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, SendOutcome.POISON),
        (grpc.StatusCode.FAILED_PRECONDITION, SendOutcome.REJECTED),
        (grpc.StatusCode.ALREADY_EXISTS, SendOutcome.DUPLICATE),
        (grpc.StatusCode.UNAVAILABLE, SendOutcome.FAILED),
        (grpc.StatusCode.DEADLINE_EXCEEDED, SendOutcome.FAILED),
        (grpc.StatusCode.UNIMPLEMENTED, SendOutcome.FAILED),
    ],
)
def test_issuer_status_codes_map_to_outcomes(code: grpc.StatusCode, outcome: SendOutcome) -> None:
    """Malformed is poison, a refusal is a rejection, no verdict is a failure to retry."""
    assert _outcome(code) is outcome
