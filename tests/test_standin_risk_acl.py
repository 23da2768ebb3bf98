"""The fleet-wide risk steps run over TLS as the gateway's least-privilege ACL user, nothing refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from redis.asyncio import Redis
from test_standin_redis_support import GATEWAY, assert_nothing_refused
from test_standin_support import engine, luhn_pan, policy, request

from chaos.processes import ManagedProcess
from chaos.redis_users import RedisUsers
from standin import Channel, JournalKind, Reason, WindowLimit
from standin.policy import ExposureBudget, Velocity, VelocityLimit

POLICY = policy(
    exposure_budgets=(
        ExposureBudget("acl", max_amount_minor=1_000_000, period=timedelta(hours=1), shards=2),
    ),
    velocity=Velocity(terminal={c: VelocityLimit(3, 10**9) for c in Channel}),
    purchase=WindowLimit(max_amount_minor=1_500, max_count=10),
)


async def test_velocity_reserve_and_release_run_as_the_gateway_user(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis, tmp_path: Path
) -> None:
    """An approval (reserve kept), card-limit declines (released), a velocity decline: all in Redis."""
    settings = redis_users.settings(tls_redis.port, GATEWAY)
    pan = luhn_pan("4555")
    async with engine(tls_redis.port, tmp_path / "l.db", pol=POLICY, redis_settings=settings) as e:
        decisions = [
            await e.decide(request(pan, amount_minor=1_000, terminal_id="T-acl"), Reason.ALL_POOLS_FAILED)
            for _ in range(4)
        ]
        [budget] = await e.exposure()
    assert [d.rule for d in decisions] == ["approved", "limit.amount.purchase", "limit.amount.purchase",
                                           "velocity.terminal.count"]  # fmt: skip
    assert {d.journal for d in decisions} == {JournalKind.REDIS}
    assert budget.exposure_minor == 1_000
    await assert_nothing_refused(tls_admin)
