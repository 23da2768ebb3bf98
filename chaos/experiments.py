"""The chaos experiments: one fault script each, on the full local topology.

Every experiment runs etcd with a health agent per issuer host, the gateways'
Redis (stand-in counters and journal), two pools of two issuer hosts sharing
an issuer ledger, and one or two gateways. `scale` compresses the timeline
(the short versions inside `make test` use scale < 1). Every one is judged on
the money oracle's six figures; the experiments whose fault is aimed at
money itself (lost Redis replies, short deadlines, replays, late approvals,
client cancels, reversals, and `money` combining them) are in
`chaos.experiments_money`, registered here.
"""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Callable, Sequence

from chaos.acquirer import AcquirerBehaviour
from chaos.experiment import Criterion, Experiment, Run
from chaos.experiment_kit import ATTEMPT_TIMEOUT_MS, PRIMARY, SECONDARY
from chaos.experiment_kit import set_faults as _faults
from chaos.experiment_kit import signal_members as _signal
from chaos.experiment_kit import spec as _spec
from chaos.experiments_cluster import CLUSTER_EXPERIMENTS
from chaos.experiments_money import MONEY_EXPERIMENTS
from chaos.experiments_risk import RISK_EXPERIMENTS
from chaos.report import Phase, summarize
from chaos.samples import Sample

__all__ = ["EXPERIMENTS", "build"]


def _no_failure(samples: Sequence[Sample], run: Run) -> list[Criterion]:
    failed = sum(1 for s in samples if not (s.answered and s.latency_s <= 2.0))
    return [Criterion("failed requests (whole run)", "0", str(failed), failed == 0)]


def _all_by_issuer(samples: Sequence[Sample], run: Run) -> list[Criterion]:
    standin = sum(1 for s in samples if s.source == "STAND_IN")
    return [
        Criterion("answers by stand-in (an issuer pool was always healthy)", "0", str(standin), standin == 0)
    ]


def _window_p99(samples: Sequence[Sample], start: float, end: float) -> float:
    return summarize([s for s in samples if start <= s.sent_at < end]).p99_ms


# -- the experiments ------------------------------------------------------------------------------


def pool_crash(scale: float) -> Experiment:
    t_fault, t_back, end = 5 * scale, 15 * scale, 25 * scale

    async def script(run: Run) -> None:
        await run.at(t_fault)
        run.fault("every primary host SIGKILLed")
        for m in PRIMARY:
            run.topo.sims[m].kill()
        await run.at(t_back)
        run.note("primary hosts restarted (their agents register them again)")
        for m in PRIMARY:
            await asyncio.to_thread(run.topo.restart_sim, m)

    phases = (
        Phase("normal", 0, t_fault),
        Phase("primary crashed", t_fault, t_back, True),
        Phase("restarted", t_back, end),
    )
    return Experiment(
        "pool-crash", "the primary pool crashes", _spec(), end, phases, script, more_criteria=_no_failure
    )


def pool_hang(scale: float) -> Experiment:
    t_fault, t_back, end = 5 * scale, 15 * scale, 22 * scale

    async def script(run: Run) -> None:
        await run.at(t_fault)
        run.fault("every primary host SIGSTOPped (TCP accepts, nothing answers)")
        _signal(run, PRIMARY, signal.SIGSTOP)
        await run.at(t_back)
        run.note("primary hosts resumed")
        _signal(run, PRIMARY, signal.SIGCONT)

    def extra(samples: Sequence[Sample], run: Run) -> list[Criterion]:
        normal = _window_p99(samples, 1.0, t_fault)
        first = _window_p99(samples, t_fault, t_fault + 1)
        later = _window_p99(samples, t_fault + 2, t_back)
        bound = ATTEMPT_TIMEOUT_MS + normal + 100
        settled = max(3 * normal, normal + 50)
        return [
            *_no_failure(samples, run),
            Criterion(
                "p99 in the first second of the hang",
                f"<= {bound:.0f} ms",
                f"{first:.1f} ms",
                first <= bound,
                timing=True,
            ),
            Criterion(
                "p99 from 2 s after the hang (ejected)",
                f"<= {settled:.0f} ms",
                f"{later:.1f} ms",
                later <= settled,
                timing=True,
            ),
        ]

    phases = (
        Phase("normal", 0, t_fault),
        Phase("primary hung", t_fault, t_back, True),
        Phase("resumed", t_back, end),
    )
    return Experiment(
        "pool-hang", "the primary pool hangs", _spec(), end, phases, script, more_criteria=extra
    )


def total_outage(scale: float, *, iso8583: bool = False) -> Experiment:
    """The 30 August case; with `iso8583`, issuer hosts speak ISO 8583 and acquirers also reverse."""
    t_fault, t_back, end = 5 * scale, 20 * scale, 28 * scale

    async def script(run: Run) -> None:
        await run.at(t_fault)
        run.fault("every issuer host of every pool SIGSTOPped (30 August)")
        _signal(run, PRIMARY + SECONDARY, signal.SIGSTOP)
        await run.at(t_back)
        run.note("every issuer host resumed")
        _signal(run, PRIMARY + SECONDARY, signal.SIGCONT)

    # An ISO 8583 reply does not say who decided: with ISO 8583 acquirers, an answer while every host
    # is stopped is stand-in's, and the issuer's books show who decided (the money figures).
    by_issuer, by_standin = ("ISSUER", "STAND_IN") if not iso8583 else ("SOURCE_UNSPECIFIED",) * 2

    def extra(samples: Sequence[Sample], run: Run) -> list[Criterion]:
        standin = sum(1 for s in samples if s.source == by_standin and t_fault + 1 <= s.sent_at < t_back)
        tail = [s for s in samples if s.sent_at >= end - 3 * scale and not s.advice]
        issuer_tail = sum(1 for s in tail if s.source == by_issuer)
        advices = [s for s in samples if s.advice]
        acked = sum(1 for s in advices if s.answers)
        return [
            Criterion("stand-in answers during the outage", "> 0", str(standin), standin > 0),
            Criterion("acquirer advices acknowledged", str(len(advices)), str(acked), acked == len(advices)),
            Criterion(  # how soon stand-in mode ends (probe rounds, relapse back-off): a timing bound
                "issuer answers again at the end",
                "> 90 %",
                f"{issuer_tail}/{len(tail)}",
                issuer_tail > 0.9 * len(tail),
                timing=True,
            ),
        ]

    phases = (
        Phase("normal", 0, t_fault),
        Phase("every pool hung", t_fault, t_back, True),
        Phase("back", t_back, end),
    )
    # A small share of forced posts and offline approvals (acquirer advices), before, during and after.
    behaviour = AcquirerBehaviour(advice_share=0.03)
    if iso8583:  # ISO 8583 acquirers -> gateways -> ISO 8583 issuer hosts; reversals before and after
        # 150/s: pyiso8583 and Python TLS on both ends of every issuer link cost several times
        # gRPC's C core per answer, and this runs on 2 shared cores (README, issuer-side ISO 8583).
        behaviour = AcquirerBehaviour(reverse_share=0.1, reverse_first_share=0.02, advice_share=0.03)
        # uvloop: its TLS is in Cython
        spec = _spec(iso8583_issuers=True, iso8583_acquirers=True, sim_args=("--uvloop",))
        return Experiment(
            "iso8583", "ISO 8583 both sides: every issuer host stops answering", spec, end, phases, script,
            rate_per_s=150.0, more_criteria=extra, settle_timeout_s=120.0, behaviour=behaviour,
        )  # fmt: skip
    return Experiment(
        "total-outage", "every issuer host stops answering", _spec(), end, phases, script,
        more_criteria=extra, behaviour=behaviour, traces=True,
    )  # fmt: skip


def decline_storm(scale: float) -> Experiment:
    t_fault, t_back, end = 5 * scale, 15 * scale, 22 * scale

    async def script(run: Run) -> None:
        await run.at(t_fault)
        run.fault("every primary host answers 96 to everything")
        await _faults(run, PRIMARY, decline_code="96")
        await run.at(t_back)
        run.note("primary hosts answer normally again")
        await _faults(run, PRIMARY)

    def extra(samples: Sequence[Sample], run: Run) -> list[Criterion]:
        storms = sum(1 for s in samples if s.response_code == "96")
        return [
            *_no_failure(samples, run),
            Criterion("96 answers reaching cardholders", "0", str(storms), storms == 0),
        ]

    phases = (
        Phase("normal", 0, t_fault),
        Phase("96 storm", t_fault, t_back, True),
        Phase("normal", t_back, end),
    )
    return Experiment(
        "decline-storm", "the primary pool answers 96", _spec(), end, phases, script, more_criteria=extra
    )


def flap(scale: float) -> Experiment:
    t_fault, t_back, end = 5 * scale, 17 * scale, 24 * scale

    async def script(run: Run) -> None:
        await run.at(t_fault)
        run.fault("primary pool starts flapping: down and up every 2 s")
        t, down = t_fault, True
        while t < t_back:
            _signal(run, PRIMARY, signal.SIGSTOP if down else signal.SIGCONT)
            down = not down
            t += 2.0
            await run.at(t)
        _signal(run, PRIMARY, signal.SIGCONT)
        run.note("primary pool stable again")

    phases = (
        Phase("normal", 0, t_fault),
        Phase("flapping", t_fault, t_back, True),
        Phase("stable", t_back, end),
    )
    return Experiment(
        "flap", "the primary pool flaps every 2 s", _spec(), end, phases, script, more_criteria=_all_by_issuer
    )


def etcd_down(scale: float) -> Experiment:
    t_down, t_up, t_one, end = 5 * scale, 12 * scale, 16 * scale, 24 * scale

    async def script(run: Run) -> None:
        await run.at(t_down)
        run.fault("every etcd member SIGKILLed (etcd down)")
        for e in run.topo.etcd:
            e.kill()
        await run.at(t_up)
        run.note("etcd cluster restarted")
        await asyncio.gather(*(asyncio.to_thread(e.start, False) for e in run.topo.etcd))
        await run.at(t_one)
        run.fault("one of three etcd members SIGKILLed for good")
        run.topo.etcd[0].kill()

    def extra(samples: Sequence[Sample], run: Run) -> list[Criterion]:
        return [*_no_failure(samples, run), *_all_by_issuer(samples, run)]

    phases = (
        Phase("normal", 0, t_down),
        Phase("etcd down", t_down, t_up, True),
        Phase("etcd back", t_up, t_one),
        Phase("1 of 3 down", t_one, end, True),
    )
    spec = _spec(etcd_nodes=3)
    return Experiment(
        "etcd-down", "etcd lost, then one of 3 members", spec, end, phases, script, more_criteria=extra
    )


def redis_down(scale: float) -> Experiment:
    t_out, t_redis, t_redis_back, t_back, end = 5 * scale, 9 * scale, 15 * scale, 20 * scale, 28 * scale

    async def script(run: Run) -> None:
        await run.at(t_out)
        run.fault("every issuer host SIGSTOPped: stand-in")
        _signal(run, PRIMARY + SECONDARY, signal.SIGSTOP)
        await run.at(t_redis)
        run.fault("the gateways' Redis SIGKILLed during stand-in (local journal takes over)")
        assert run.topo.redis is not None
        run.topo.redis.kill()
        await run.at(t_redis_back)
        run.note("Redis restarted (AOF): local decisions move to the stream")
        await asyncio.to_thread(run.topo.redis.start)
        await run.at(t_back)
        run.note("issuer hosts resumed: settlement")
        _signal(run, PRIMARY + SECONDARY, signal.SIGCONT)

    phases = (
        Phase("normal", 0, t_out),
        Phase("stand-in on Redis", t_out, t_redis, True),
        Phase("stand-in, Redis down", t_redis, t_redis_back, True),
        Phase("Redis back", t_redis_back, t_back, True),
        Phase("issuer back", t_back, end),
    )
    return Experiment("redis-down", "Redis dies during a total outage", _spec(), end, phases, script)


def gateway_crash(scale: float) -> Experiment:
    t_out, t_kill1, t_up1, t_back, t_kill2, t_up2, end = (x * scale for x in (5, 9, 12, 16, 18, 21, 28))

    async def script(run: Run) -> None:
        await run.at(t_out)
        run.fault("every issuer host SIGSTOPped: the three gateways in stand-in")
        _signal(run, PRIMARY + SECONDARY, signal.SIGSTOP)
        await run.at(t_kill1)
        run.fault("gateway gw-2 SIGKILLed in the middle of stand-in")
        run.topo.gateways[1].kill()
        await run.at(t_up1)
        run.note("gw-2 restarted")
        await asyncio.to_thread(run.topo.gateways[1].start)
        await run.at(t_back)
        run.note("issuer hosts resumed: settlement starts")
        _signal(run, PRIMARY + SECONDARY, signal.SIGCONT)
        await run.at(t_kill2)
        run.fault("gateway gw-1 SIGKILLed in the middle of settlement")
        run.topo.gateways[0].kill()
        await run.at(t_up2)
        run.note("gw-1 restarted")
        await asyncio.to_thread(run.topo.gateways[0].start)

    phases = (
        Phase("normal", 0, t_out),
        Phase("stand-in", t_out, t_kill1, True),
        Phase("gw-2 killed", t_kill1, t_up1, True),
        Phase("stand-in", t_up1, t_back, True),
        Phase("settling", t_back, t_kill2),
        Phase("gw-1 killed", t_kill2, t_up2, True),
        Phase("back", t_up2, end),
    )
    spec = _spec(gateways=3)  # a fleet: the two survivors absorb the dead one's share (issue 18)
    return Experiment(
        "gateway-crash", "one of three gateways dies in stand-in and in settlement", spec, end, phases, script
    )


EXPERIMENTS: dict[str, Callable[[float], Experiment]] = {
    "pool-crash": pool_crash,
    "pool-hang": pool_hang,
    "total-outage": total_outage,
    "decline-storm": decline_storm,
    "flap": flap,
    "etcd-down": etcd_down,
    "redis-down": redis_down,
    "gateway-crash": gateway_crash,
    "iso8583": functools.partial(total_outage, iso8583=True),
}
EXPERIMENTS.update(MONEY_EXPERIMENTS)
EXPERIMENTS.update(CLUSTER_EXPERIMENTS)
EXPERIMENTS.update(RISK_EXPERIMENTS)


def build(name: str, scale: float = 1.0) -> Experiment:
    """The experiment called `name` (a make target without its chaos- prefix)."""
    try:
        return EXPERIMENTS[name](scale)
    except KeyError:
        raise SystemExit(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None
