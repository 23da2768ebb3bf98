"""No PAN where it does not belong: every log, span, metric, error message, Redis key and value,
AOF and RDB file and SQLite file of a full run is scanned for more than the last four digits.

One scenario (tests/pan_scan_scenario.py) runs a gateway with stand-in, Redis, its local
journal, settlement, traces and metrics through known PANs; the scanner (tests/pan_scan.py)
looks for each PAN in full, its BIN with its last four in any form, its middle digits, any
eight of its digits in a row, and its binary encodings. Issuer hosts are the only place a
PAN may go (the simulators are not scanned in memory; their logs and spans are).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest

from standin.types import luhn_valid
from tests.pan_scan import Finding, PanScanner
from tests.pan_scan_collect import Outputs
from tests.pan_scan_scenario import BAD_LUHN, P1, PANS, run_scenario

SCANNER = PanScanner((*PANS, BAD_LUHN))


@pytest.fixture(scope="module")
async def outputs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Outputs]:
    """The scenario, run once for the module (inputs such as card-status files kept outside its tree)."""
    yield await run_scenario(tmp_path_factory.mktemp("scan"), tmp_path_factory.mktemp("scan-inputs"))


def _report(findings: list[Finding]) -> str:
    seen = dict.fromkeys(f"{f.where}: {f.rule} of …{f.card}: {f.excerpt}" for f in findings)
    return "\n".join(list(seen)[:40])


def test_every_path_was_taken(outputs: Outputs) -> None:
    """The scan means something: issuer, stand-in, local journal, refusals, AOF, spans, logs all happened."""
    c = outputs.counts
    assert c["answer ISSUER"] >= len(PANS) and c["answer STAND_IN"] >= 2 * len(PANS), c
    assert c["refused INVALID_ARGUMENT"] >= 14 and c["refused ALREADY_EXISTS"] == 1, c
    assert c["local backlog"] >= len(PANS), c  # decisions while Redis was dead
    assert c["journal entries"] >= 2 * len(PANS) and c["reversal entries"] >= 2, c
    assert c["aof files"] >= 2 and c["spans"] > 50 and c["python log records"] > 0, c
    assert any(where.endswith("dump.rdb") for where, _ in outputs.files)
    assert any("-wal" in where for where, _ in outputs.files)  # the WAL, copied mid-outage
    assert any(
        b"authgw:{journal:0}:decisions" in blob for where, blob in outputs.redis if "journal full" in where
    )


def test_no_pan_in_logs(outputs: Outputs) -> None:
    """Gateway, simulator and Redis process output, and Python log records of stand-in code."""
    assert len(outputs.logs) >= 4
    assert (findings := SCANNER.scan_all(outputs.logs)) == [], _report(findings)


def test_no_pan_in_spans(outputs: Outputs) -> None:
    """Every exported trace payload and every span's name, attributes, events, status and resource."""
    assert (findings := SCANNER.scan_all(outputs.spans, binary=True)) == [], _report(findings)


def test_no_pan_in_metrics(outputs: Outputs) -> None:
    """Every OTLP metrics payload and the Prometheus scrape."""
    assert any(where == "prometheus scrape" for where, _ in outputs.metrics)
    assert (findings := SCANNER.scan_all(outputs.metrics, binary=True)) == [], _report(findings)


def test_no_pan_in_error_messages(outputs: Outputs) -> None:
    """What refused requests were told, and what the operator commands printed (a bad file included)."""
    assert (findings := SCANNER.scan_all(outputs.errors)) == [], _report(findings)


def test_no_pan_in_redis(outputs: Outputs) -> None:
    """Every key and value (by type, and as DUMP bytes) of every database: live with the journal full, after
    settlement, and reloaded from the RDB file and from the AOF."""
    assert any(where.startswith("reloaded-rdb") for where, _ in outputs.redis)
    assert any(where.startswith("reloaded-aof") for where, _ in outputs.redis)
    assert (findings := SCANNER.scan_all(outputs.redis, binary=True)) == [], _report(findings)


def test_no_pan_in_any_file(outputs: Outputs) -> None:
    """Every file the run left (AOF, RDB, SQLite with WAL, logs, configs) as raw bytes, and SQLite rows."""
    assert (findings := SCANNER.scan_all(outputs.files, binary=True)) == [], _report(findings)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (f"pan={P1}", "full PAN"),
        (" ".join(P1[i : i + 4] for i in range(0, 16, 4)), "full PAN"),
        (f"{P1[:6]}******{P1[-4:]}", "BIN + last four"),
        (f"{P1[:4]} {P1[4:6]}** **** {P1[-4:]}", "BIN + last four"),
        (f'{{"bin": "{P1[:6]}", "last4": "{P1[-4:]}"}}', "BIN + last four"),
        (f"card {P1[:6]}", "BIN"),
        (f"pan_bin{P1[:6]}", "BIN"),
        (f"m={P1[6:-4]}", "middle digits"),
        (P1[4:12], "8 digits of the PAN"),
        (f"…{P1[-6:]}", "6 digits of the PAN"),
        (f"last={P1[-7:]};", "7 digits of the PAN"),
    ],
)
def test_scanner_finds_each_form(text: str, rule: str) -> None:
    """The scanner is not blind: each form of a leak is found under its rule."""
    assert rule in {f.rule for f in SCANNER.scan("t", text)}


def test_distinct_pans_are_valid_card_numbers() -> None:
    """The scan's cards pass the gateway's validation (Luhn, 12-19 digits), so they reach every path."""
    assert all(luhn_valid(pan) and 12 <= len(pan) <= 19 for pan in PANS)
    assert not luhn_valid(BAD_LUHN)


def test_scanner_finds_binary_integers_and_allows_the_last_four() -> None:
    """A PAN stored as a 64-bit integer is found; the last four alone, ports and amounts are not leaks."""
    assert SCANNER.scan("b", b"\x00" + struct.pack("<q", int(P1)) + b"\x00", binary=True)
    assert SCANNER.scan("t", f"card …{P1[-4:]} at 127.0.0.1:41111, 123456 minor units") == []
