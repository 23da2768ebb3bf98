"""chaos-long-outage: a two-hour outage, compressed, against stand-in's risk controls.

    make chaos-long-outage

Two hours of every issuer host hung become OUTAGE_S x scale seconds; the policy's windows
are compressed by the same factor K (Redis's clock cannot be sped up): the card windows
(24 h / K), the exposure budget's period (1 h / K), the merchant and terminal velocity
windows (10 min / K). The load draws on CARDS (100,000) cards:

  before the outage  the issuers answer, with each card's available balance after it
                     (simulators --send-balance); every third request drains one of the KNOWN
                     cards to about a tenth of its balance, which stand-in then knows; the others
                     are REGULAR cards' ordinary payments (each card once)
  outage             every issuer host SIGSTOPped: stand-in decides. A card pays a few times a
                     day, so most cards paying during an outage paid the day before and their
                     balance is known: REGULAR_SHARE of the requests are on regular cards, 15 %
                     on drained ones, the rest on cards never seen. The seed policy's
                     exposure budget is reached; half way the risk team's change (budget
                     raised, cash window lowered) is proposed by operator and approved by
                     operator2 (`authgw standin policy set` / `approve`); a card-testing
                     attack at one merchant (fresh cards, 1.00 each, ATTACK_SHARE of the load)
  after              the issuers are back: settlement

The run is made twice, each on its own topology: before (the policy's card limits only: no
balances, no budget, no velocity) and after (all of them, and the policy's known_balance scale:
a card whose balance the issuer reported gets KNOWN_SCALE times the generic limits, capped by
that balance). The report has both confusion
matrices (stand-in against the issuer's shadow decision, counts and amounts), the exposure
over time against the budget in force (read from the budget's Redis shards every second),
approvals above a known balance (0), the attack's approvals (at most the merchant window's
max_count per window, + 1 window), and the six money figures (each 0).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from redis.exceptions import RedisError

from authgw.v1 import authorization_pb2 as pb
from chaos.card_profiles import card_profile
from chaos.experiment import ACQUIRERS, Criterion, Experiment, Run
from chaos.experiment_kit import PRIMARY, SECONDARY, signal_members, spec
from chaos.load import CardMix
from chaos.processes import run_authgw
from chaos.report import Phase
from chaos.samples import Sample
from standin import keys

__all__ = ["RISK_EXPERIMENTS", "above_known_balance", "long_outage"]

CARDS = 100_000
KNOWN = 2_000
"""Cards drained before the outage (their balance is then known to stand-in)."""
REGULAR_SHARE = 0.5
"""Outage requests on cards that paid before it (their balance known to stand-in, not drained)."""
KNOWN_SCALE = 3.0
"""The after policy's known_balance limit_scale."""
ATTACK_SHARE = 0.1
ATTACK_MERCHANT = "M-ATTACK"
OUTAGE_S = 60.0
RATE = 120.0
BUDGET = "outage"
SHARDS = 8
MERCHANT_COUNT = 20
"""Stand-in requests one merchant may send per velocity window (per channel)."""
EVERY_HOST = PRIMARY + SECONDARY


@dataclasses.dataclass(frozen=True)
class Timeline:
    scale: float

    @property
    def t_fault(self) -> float:
        return 10 * self.scale

    @property
    def t_back(self) -> float:
        return self.t_fault + OUTAGE_S * self.scale

    @property
    def t_change(self) -> float:
        return (self.t_fault + self.t_back) / 2

    @property
    def attack(self) -> tuple[float, float]:
        return self.t_fault + 0.25 * OUTAGE_S * self.scale, self.t_fault + 0.6 * OUTAGE_S * self.scale

    @property
    def end(self) -> float:
        return self.t_back + 10 * self.scale

    @property
    def compression(self) -> float:
        """K: seconds of a real two-hour outage per second of this one."""
        return 7_200 / (OUTAGE_S * self.scale)

    def ms(self, real_s: float) -> int:
        return max(1_000, int(real_s * 1_000 / self.compression))


def policy_toml(t: Timeline, *, risk: bool, changed: bool) -> str:
    """The policy document (seed, or the change half way): card windows, and with `risk` the
    exposure budget and velocity windows, all compressed."""
    cash = "max_amount_minor = 30000\nmax_count = 2" if changed else "max_amount_minor = 50000\nmax_count = 3"
    doc = (
        f'[policy]\nwindow_length = "{t.ms(86_400)}ms"\n\n'
        "[policy.window.purchase]\nmax_amount_minor = 150000\nmax_count = 15\n\n"
        f"[policy.window.cash]\n{cash}\n"
    )
    if not risk:
        return doc
    doc += f"\n[policy.known_balance]\nlimit_scale = {KNOWN_SCALE}\n"
    period_s = t.ms(3_600) / 1000
    budget = int(RATE * period_s * (6_000 if changed else 1_500))  # about 0.5x, then 2x what is approved
    return (
        f"{doc}\n[[policy.exposure_budgets]]\nname = {BUDGET!r}\n"
        f'period = "{t.ms(3_600)}ms"\nmax_amount_minor = {budget}\nshards = {SHARDS}\n\n'
        f'[policy.velocity]\nwindow_length = "{t.ms(600)}ms"\n'
        f"[policy.velocity.merchant]\nmax_count = {MERCHANT_COUNT}\nmax_amount_minor = 100000000\n"
        "[policy.velocity.terminal]\nmax_count = 10\nmax_amount_minor = 100000000\n"
    )


def budget_of(text: str) -> int:
    found = re.search(r"max_amount_minor = (\d+)\nshards", text)
    return int(found.group(1)) if found else 0


class LongOutageLoad:
    """The requests: CardMix's, drains of KNOWN cards before the outage, known cards (15 %) and the
    attack during it; deterministic but for timing."""

    def __init__(self, run: Run, t: Timeline, cards: int) -> None:
        self._run, self._t = run, t
        self._mix = CardMix(cards=cards, seed=11, acquirer_ids=ACQUIRERS)
        self._rng = random.Random(13)
        self.known = self._mix.pans[:KNOWN]
        self._regular = self._mix.pans[KNOWN:]
        self._regulars_seen = 0
        self._drained = 0
        self._n = 0
        self._attack_cards = 0

    def __call__(self) -> pb.AuthorizeRequest:
        elapsed = time.monotonic() - self._run.t0
        req = self._mix.request()
        self._n += 1
        if elapsed < self._t.t_fault and self._n % 3 == 0 and self._drained < KNOWN:
            pan = self.known[self._drained]
            self._drained += 1
            balance = card_profile(pan).balance_minor
            req.pan, req.amount_minor = pan, min(500_000, balance - balance // 10)
            req.channel, req.mcc = pb.POS_CHIP, "5411"
            req.pin_verified = True
        elif elapsed < self._t.t_fault and self._regulars_seen < len(self._regular):
            req.pan = self._regular[self._regulars_seen]
            self._regulars_seen += 1
        elif self._t.t_fault <= elapsed < self._t.t_back:
            a, b = self._t.attack
            roll = self._rng.random()
            if a <= elapsed < b and roll < ATTACK_SHARE:
                self._attack_cards += 1
                req.pan = _attack_pan(self._attack_cards)
                req.merchant_id, req.amount_minor = ATTACK_MERCHANT, 100
                req.channel, req.mcc, req.pin_verified = pb.ECOMMERCE, "5999", False
            elif roll > 0.85 and self._drained:
                req.pan = self.known[self._rng.randrange(self._drained)]
            elif roll > 0.85 - REGULAR_SHARE and self._regulars_seen:
                req.pan = self._regular[self._rng.randrange(self._regulars_seen)]
        return req


def _attack_pan(n: int) -> str:
    body = f"52{n:013d}"
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def _attacker(pan_of: dict[str, str], s: Sample) -> bool:
    return pan_of.get(f"{s.acquirer_id}:{s.request_id}", "").startswith("52")


def above_known_balance(
    samples: Sequence[Sample], pan_of: dict[str, str], examples: list[str]
) -> tuple[int, int, int]:
    """(cards with a balance the issuer reported, stand-in approvals above it, amount above).

    A card's reported balance is its opening balance minus every approval answered before its last
    issuer answer (the simulator's books); stand-in approvals since then must fit in it.
    `examples` gets the first few approvals above it."""
    known: dict[str, int] = {}
    spent: dict[str, int] = {}
    since: dict[str, int] = {}
    over = above = 0
    examples.clear()
    for s in sorted(samples, key=lambda x: x.sent_at):
        pan = pan_of.get(f"{s.acquirer_id}:{s.request_id}")
        if pan is None or s.reused or not s.response_code:
            continue
        if s.approved:
            spent[pan] = spent.get(pan, 0) + s.amount_minor
        if s.source == "ISSUER":
            known[pan] = card_profile(pan).balance_minor - spent.get(pan, 0)
            since[pan] = 0
        elif s.source == "STAND_IN" and s.approved and pan in known and not s.advice:
            since[pan] += s.amount_minor
            if since[pan] > known[pan]:
                over += 1
                above += min(s.amount_minor, since[pan] - known[pan])
                if len(examples) < 5:
                    examples.append(f"t={s.sent_at:.1f}s {s.request_id} {s.amount_minor} known {known[pan]}")
    return len(known), over, above


async def _exposure(run: Run) -> int:
    """The budget's approved amount in its period now, over its shards (Redis's clock)."""
    period_ms = int(run.extra["period_ms"])
    r = run.topo.redis_admin()
    try:
        seconds, micros = await r.time()
        cutoff = seconds * 1000 + micros // 1000 - period_ms
        total = 0
        for shard in range(SHARDS):
            members = await r.zrangebyscore(keys.budget_keys(BUDGET, shard)[0], f"({cutoff}", "+inf")
            total += sum(_amount(m) for m in members)
        return total
    finally:
        await r.aclose()


def _amount(member: object) -> int:
    """The amount of a window member `<id>:<amount>`."""
    text = member.decode() if isinstance(member, bytes) else str(member)
    return int(text.rsplit(":", 1)[1])


def _policy_change(run: Run, text: str, workdir: Path) -> str:
    """Propose as operator, approve as operator2; the CLI's answer."""
    path = workdir / "policy-change.toml"
    path.write_text(text)
    proposed = run_authgw(["standin", "policy", "set", str(path), *run.topo.etcd_args("operator")])
    found = re.search(r"proposal (\S+)", proposed.stdout)
    if proposed.returncode != 0 or found is None:
        return f"set failed: {proposed.stderr.strip()[-200:]}"
    approved = run_authgw(["standin", "policy", "approve", found.group(1), *run.topo.etcd_args("operator2")])
    return (approved.stdout or approved.stderr).strip()[-200:]


def long_outage(scale: float, *, risk: bool = True) -> Experiment:
    t = Timeline(scale)
    seed, change = policy_toml(t, risk=risk, changed=False), policy_toml(t, risk=risk, changed=True)

    async def script(run: Run) -> None:
        run.extra.update(period_ms=t.ms(3_600), compression=round(t.compression, 1))
        budget = budget_of(seed)
        timeline: list[list[float]] = []
        run.extra["exposure_over_time"] = timeline  # [s, exposure, budget in force]

        async def watch() -> None:
            while risk and time.monotonic() - run.t0 < t.end:
                try:
                    timeline.append([round(time.monotonic() - run.t0, 1), await _exposure(run), budget])
                except (RedisError, OSError) as exc:  # a missed reading, not a verdict
                    run.note(f"exposure not read: {exc}")
                await asyncio.sleep(1.0)

        watcher = asyncio.create_task(watch())
        try:
            await run.at(t.t_fault)
            run.fault("every issuer host SIGSTOPped: a two-hour outage, compressed")
            signal_members(run, EVERY_HOST, signal.SIGSTOP)
            await run.at(t.t_change)
            run.note("the risk team's change: proposed by operator, approved by operator2")
            answer = await asyncio.to_thread(_policy_change, run, change, run.topo.workdir)
            run.extra["policy_change"] = answer
            run.extra["policy_change_live_at_s"] = round(time.monotonic() - run.t0, 1)
            run.note(answer)
            budget = budget_of(change)
            await run.at(t.t_back)
            run.note("every issuer host resumed")
            signal_members(run, EVERY_HOST, signal.SIGCONT)
            await run.at(t.end)
        finally:
            watcher.cancel()

    def extra(samples: Sequence[Sample], run: Run) -> list[Criterion]:
        standin = [s for s in samples if s.source == "STAND_IN" and s.answers]
        rules = Counter(s.answers[-1].rule for s in standin if not s.approved)
        run.extra["standin_declines_by_rule"] = dict(rules.most_common())
        pan_of = run.pan_of
        examples: list[str] = []
        cards, over, above = above_known_balance(samples, pan_of, examples)
        run.extra["above_known_balance_examples"] = examples
        a, b = t.attack
        attack = [s for s in standin if s.approved and _attacker(pan_of, s)]
        windows = (b - a) / (t.ms(600) / 1000) + 1
        bound = int(MERCHANT_COUNT * windows) * len(ACQUIRERS)
        run.extra |= {"attack_approved": len(attack), "attack_bound": bound, "known_balance_cards": cards}
        changed = str(run.extra.get("policy_change", ""))
        live = "version 1 live"
        out = [Criterion("policy change live (dual control)", live, changed, live in changed)]
        if not risk:
            return out
        worst = max((e - bgt for _, e, bgt in run.extra["exposure_over_time"]), default=0)
        by_budget = rules.get(f"exposure_budget.{BUDGET}", 0)
        return [
            *out,
            Criterion(
                "stand-in approvals above a balance the issuer reported", "0",
                f"{over} ({above} minor units; {cards} cards known)", over == 0,
            ),
            Criterion("exposure above the budget in force (max, minor)", "<= 0", str(worst), worst <= 0),
            Criterion("declines by the exposure budget (reached)", "> 0", str(by_budget), by_budget > 0),
            Criterion(
                "the attack's approvals (bounded by the merchant window)", f"<= {bound}",
                str(len(attack)), len(attack) <= bound,
            ),
        ]  # fmt: skip

    def requests(run: Run, cards: int) -> Callable[[], pb.AuthorizeRequest]:
        return LongOutageLoad(run, t, cards)

    phases = (
        Phase("normal", 0, t.t_fault),
        Phase("outage, seed policy", t.t_fault, t.t_change, True),
        Phase("outage, changed policy", t.t_change, t.t_back, True),
        Phase("back", t.t_back, t.end),
    )
    # A patient Redis deadline: on 2 shared cores a 120 ms one sends stand-in to local mode
    # (no balances there: they live in Redis) for most of the outage.
    topology = spec(
        standin_policy_toml=seed, sim_args=("--send-balance",) if risk else (),
        standin_redis={"command_deadline": "1s", "socket_timeout": "800ms"},
    )  # fmt: skip
    name, title = (
        ("long-outage", "two hours of outage: budget, balances, velocity, a policy change")
        if risk
        else ("long-outage-before", "two hours of outage: the policy's card limits only")
    )
    return Experiment(
        name, title, topology, t.end, phases, script, rate_per_s=RATE, more_criteria=extra,
        settle_timeout_s=180.0, cards=CARDS, requests=requests,
        baseline=long_outage(scale, risk=False) if risk else None,
    )  # fmt: skip


RISK_EXPERIMENTS: dict[str, Callable[[float], Experiment]] = {"long-outage": long_outage}
