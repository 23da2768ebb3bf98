"""What every chaos experiment's fault script builds on: the pools, the topology, signals and faults."""

from __future__ import annotations

import signal
from collections.abc import Sequence

from chaos.experiment import Run
from chaos.topology import TopologySpec

__all__ = ["ATTEMPT_TIMEOUT_MS", "PRIMARY", "SECONDARY", "set_faults", "signal_members", "spec"]

PRIMARY = ("a1", "a2")
SECONDARY = ("b1", "b2")
ATTEMPT_TIMEOUT_MS = 400


def spec(**kw: object) -> TopologySpec:
    """The experiments' topology: etcd, the gateways' Redis, the attempt timeout above."""
    return TopologySpec(etcd=True, redis=True, attempt_timeout_ms=ATTEMPT_TIMEOUT_MS, **kw)  # type: ignore[arg-type]


def signal_members(run: Run, members: Sequence[str], sig: signal.Signals) -> None:
    for m in members:
        run.topo.sims[m].signal(sig)


async def set_faults(run: Run, members: Sequence[str], **faults: object) -> None:
    """Replace the faults of every simulator in `members` (none given: healthy again)."""
    for m in members:
        async with run.topo.sim_control(m) as ctl:
            await ctl.set_faults(**faults)  # type: ignore[arg-type]
