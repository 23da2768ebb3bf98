"""chaos-long-outage, compressed, in `make test`: the same runner and criteria as
`make chaos-long-outage`, without its "before" run (that one only feeds the confusion matrix).

A quarter of the experiment's scale: 15 s of outage stand for two hours (the policy's windows
divided by 480). Its criteria: no stand-in approval above a balance the issuer reported, the
exposure budget reached and never exceeded, the policy change (two operators) live, the attack's
approvals within the merchant window; and the six money figures, each 0.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from chaos.experiment import run_experiment
from chaos.experiments_risk import long_outage
from chaos.verify import FIGURES

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

SCALE = 0.25


async def test_chaos_long_outage(tmp_path: Path) -> None:
    """Budget reached, balances respected, the attack bounded, the change live; money exact."""
    exp = dataclasses.replace(long_outage(SCALE), baseline=None)
    with (tmp_path / "console.txt").open("w") as out:
        report: dict[str, Any] = await run_experiment(
            exp, tmp_path / "topology", Console(file=out, width=130), tmp_path / "reports"
        )
    failed = [c for c in report["criteria"] if not c["passed"] and not c["timing"]]
    assert failed == [], (tmp_path / "console.txt").read_text()[-3000:]
    names = {c["name"] for c in report["criteria"]}
    risk = {
        "stand-in approvals above a balance the issuer reported",
        "declines by the exposure budget (reached)",
    }
    assert risk <= names, names
    settlement = report["settlement"]
    assert {name: settlement[name] for name in FIGURES} == dict.fromkeys(FIGURES, 0), settlement["examples"]
    assert report["standin"]["confusion"]["both_approve"]["count"] > 0
