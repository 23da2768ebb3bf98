"""`authgw top`'s frame for a fleet: every gateway's row, fleet sums, a gateway down, exposure."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from gateway.top.model import GatewayView, PoolView
from gateway.top.render import Frame, render
from gateway.top.sources import JournalView


def _screen(frame: Frame) -> str:
    console = Console(record=True, width=220, color_system=None)
    console.print(render(frame))
    return console.export_text()


def _view(instance: str, mode: str, standin_00: float, **extra: object) -> GatewayView:
    members = {"healthy": 0, "half_open": 0, "ejected": 2}
    pool = PoolView("primary", "failing", False, members, {"a1": "ejected"})
    return GatewayView(
        url=f"http://{instance}/metrics",
        instance=instance,
        mode=mode,
        pools=[pool],
        answers={("STAND_IN", "00"): standin_00, ("STAND_IN", "51"): 1.0, ("ISSUER", "00"): 0.0},
        **extra,  # type: ignore[arg-type]
    )


def _line(screen: str, *words: str) -> str:
    (line,) = [row for row in screen.splitlines() if all(w in row for w in words)]
    return line


def test_fleet_rows_sums_and_a_gateway_down() -> None:
    """Each gateway has its row, a gateway whose endpoint failed says DOWN with the error, answers
    per second are summed over the fleet, the header lists every mode seen; no oldest age for an
    empty journal."""
    frame = Frame(
        datetime.now(UTC),
        [
            _view("gw-1", "stand-in", 40.0),
            _view("gw-2", "issuer", 10.0, journal_depth={"redis": 0.0}, journal_oldest_s={"redis": 12.0}),
            GatewayView("http://gw-3/metrics", "http://gw-3/metrics", error="URLError: refused"),
        ],
    )
    screen = _screen(frame)
    assert "3 gateway(s)  mode STAND-IN, issuer" in screen
    assert "URLError: refused" in _line(screen, "gw-3", "DOWN")
    assert "00: 50.0  51: 2.0" in _line(screen, "STAND_IN", "52.0")
    assert "a1:ejected" in _line(screen, "gw-2", "primary", "failing")
    assert "12 s" not in _line(screen, "gw-2", "issuer")  # the age of an empty journal is no age


def test_exposure_against_its_budget_when_exported() -> None:
    """A gateway exporting exposure and budget: the share of the budget used, and no 'not exported'."""
    view = _view("gw-1", "stand-in", 1.0, exposure={"window=1h": 500.0}, exposure_budget={"window=1h": 1e3})
    screen = _screen(Frame(datetime.now(UTC), [view]))
    assert "exposure window=1h (gw-1): 500 minor units of budget 1000 (50%)" in screen
    assert "no budget metric" not in screen


def test_exposure_alone_says_there_is_no_budget() -> None:
    """Without exposure metrics: said, and the journal's stand-in approvals of the last hour shown."""
    journal = JournalView(entries=7, approved_hour={"EUR": 1234}, approvals_hour=3)
    screen = _screen(Frame(datetime.now(UTC), [_view("gw-1", "stand-in", 1.0)], journal=journal))
    assert "no exposure metric exported, no budget metric exported yet" in screen
    assert "as seen since top started): 3, EUR 1234 minor units" in screen
    assert "journal (Redis, fleet): 7 unsettled" in screen
