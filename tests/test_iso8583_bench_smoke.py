"""The ISO 8583 benchmark still runs (its numbers are never asserted)."""

from __future__ import annotations

import pytest

from chaos.bench_iso8583 import main


def test_the_benchmark_prints_a_row_per_bitmap_encoding(capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny run prints encode/decode columns and one row for each bitmap encoding."""
    main(["--messages", "5", "--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert "encode" in lines[1] and "decode" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["ascii-hex", "binary"]
