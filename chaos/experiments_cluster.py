"""A Redis Cluster master dies during a total outage: no approval is lost, limits are measured.

    make chaos-redis-master-loss

The gateways' Redis is a Cluster of 3 masters + 3 replicas (TopologySpec.redis_cluster, WAIT
for 1 replica before each answer). Every issuer host is SIGSTOPped (stand-in), then the master
owning the journal partitions' slots is SIGKILLed; its replica is promoted about a second later
(cluster-node-timeout 1000 ms). Meanwhile the gateways decide on their local journals, move
them to the Cluster once it answers, and settle when the issuers are back: the six money
figures must be 0. The old master comes back as a replica (the promoted one then has a replica
to WAIT for again).

Approvals above a card's limit are measured, not assumed: after the failover, every card's
window counters in the Cluster (its spend sets, local decisions absorbed) are read and compared
with the policy's limits; the report gives the cards over and the amount above (gateways
deciding locally each grant up to limit_fraction of a limit on top of what Redis had counted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import time
from collections.abc import Sequence

from redis.crc import key_slot

from chaos.experiment import Criterion, Experiment, Run
from chaos.experiment_kit import PRIMARY, SECONDARY, signal_members, spec
from chaos.processes import ProcessError
from chaos.redis_cluster import LocalCluster
from chaos.report import Phase
from chaos.samples import Sample
from standin import keys
from standin.policy import StandInPolicy
from standin.redis_io import make_redis_client
from standin.settings import JournalSettings
from standin.types import LimitKind

__all__ = ["CLUSTER_EXPERIMENTS", "FAILOVER_FAILED", "OverLimit", "over_limit"]

EVERY_HOST = PRIMARY + SECONDARY
FAILOVER_FAILED = "requests unanswered in their deadline from the master's kill to the issuers' return"


@dataclasses.dataclass
class OverLimit:
    """Cards whose approvals in the window exceed the policy's limit, as the Cluster counts them."""

    cards: int = 0
    cards_over: int = 0
    amount_above_minor: int = 0
    count_above: int = 0
    measured: bool = False


async def over_limit(cluster: LocalCluster, policy: StandInPolicy) -> OverLimit:
    """Read every card's spend sets (members `decision_id:amount`) and compare with the limits."""
    assert cluster.users is not None, "the experiment runs the secure topology"
    port = next(n.port for n in cluster.nodes if n.alive())
    client = make_redis_client(dataclasses.replace(cluster.users.admin_settings(port), cluster=True))
    out = OverLimit(measured=True)
    try:
        async for raw in client.scan_iter(match="authgw:*:spend:*", count=1000):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            limit = policy.limit(LimitKind(key.rsplit(":", 1)[1]))
            members: list[bytes] = await client.zrange(key, 0, -1)  # type: ignore[assignment]
            amount = sum(int(m.rsplit(b":", 1)[1]) for m in members)
            out.cards += 1
            above = max(0, amount - limit.max_amount_minor), max(0, len(members) - limit.max_count)
            if any(above):
                out.cards_over += 1
                out.amount_above_minor += above[0]
                out.count_above += above[1]
    finally:
        await client.aclose()
    return out


def _victim(cluster: LocalCluster, rank: int | None) -> tuple[int, int]:
    """The master to kill, and how many journal partitions' slots it owns: the `rank`-th master
    by port (0-2), or with None the one owning most partitions."""
    partitions = JournalSettings().partitions
    owners = [cluster.owner_of(key_slot(keys.stream_key(p).encode())) for p in range(partitions)]
    port = max(set(owners), key=owners.count) if rank is None else sorted(cluster.masters())[rank]
    return port, owners.count(port)


def _wait_promoted(cluster: LocalCluster, dead: int, timeout_s: float = 30.0) -> tuple[int, float]:
    """Blocking: until 3 masters own every slot again without `dead`; (ports promoted, seconds)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            masters = cluster.masters()
            if dead not in masters and len(masters) == 3 and sum(masters.values()) == 16384:
                return len(masters), time.monotonic() - t0
        except (ProcessError, subprocess.TimeoutExpired, ValueError):
            pass  # a node refusing or half-way through the failover: ask again
        time.sleep(0.1)
    return 0, time.monotonic() - t0


def redis_master_loss(scale: float, master: int | None = None) -> Experiment:
    """`master`: which master dies, by rank of port (0-2); None: the one owning most journal partitions."""
    t_out, t_kill, t_rejoin, t_back, end = (x * scale for x in (4, 8, 14, 20, 28))
    measured = OverLimit()
    failover: list[float] = []  # seconds from the kill to a promoted replica

    async def script(run: Run) -> None:
        cluster = run.topo.redis_cluster
        assert cluster is not None
        await run.at(t_out)
        run.fault("every issuer host SIGSTOPped: stand-in on the Redis Cluster")
        signal_members(run, EVERY_HOST, signal.SIGSTOP)
        await run.at(t_kill)
        port, owned = await asyncio.to_thread(_victim, cluster, master)
        run.fault(f"Redis master :{port} SIGKILLed (owns {owned} journal partition(s))")
        cluster.node(port).kill()
        promoted, took = await asyncio.to_thread(_wait_promoted, cluster, port)
        run.note(f"replica promoted {took:.1f} s after the kill" if promoted else "NO replica promoted")
        if promoted:
            failover.append(took)
        await run.at(t_rejoin)
        run.note(f"old master :{port} restarted: it rejoins as a replica")
        await asyncio.to_thread(cluster.node(port).start)
        await run.at(t_back)
        measured.__dict__.update(dataclasses.asdict(await over_limit(cluster, StandInPolicy())))
        run.note("every issuer host resumed: settlement")
        signal_members(run, EVERY_HOST, signal.SIGCONT)

    def criteria(samples: Sequence[Sample], run: Run) -> list[Criterion]:
        m = measured
        seen = f"{m.cards_over} of {m.cards} cards, {m.amount_above_minor} minor units"
        seen += f", {m.count_above} approvals"
        took = f"{failover[0]:.1f} s" if failover else "never"
        failed = sum(
            1
            for x in samples
            if t_kill <= x.sent_at < t_back and x.judged and not (x.answered and x.latency_s <= x.deadline_s)
        )
        return [
            Criterion(FAILOVER_FAILED, "0", str(failed), failed == 0),
            Criterion("a replica promoted after the master's SIGKILL", "within 30 s", took, bool(failover)),
            Criterion(
                "card limits read from the Cluster after the failover", "yes", str(m.measured), m.measured
            ),
            Criterion("approvals above a card's limit (measured, reported)", "reported", seen, True),
        ]

    phases = (
        Phase("normal", 0, t_out),
        Phase("stand-in on the Cluster", t_out, t_kill, True),
        Phase("master killed, failover", t_kill, t_rejoin, True),
        Phase("old master back as replica", t_rejoin, t_back, True),
        Phase("issuer back", t_back, end),
    )
    return Experiment(
        "redis-master-loss",
        "a Redis Cluster master dies during a total outage",
        spec(redis_cluster=True),
        end,
        phases,
        script,
        rate_per_s=200.0,
        more_criteria=criteria,
    )


CLUSTER_EXPERIMENTS = {"redis-master-loss": redis_master_loss}
