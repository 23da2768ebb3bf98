"""Stand-in and settlement over mutual TLS as least-privilege ACL redis_users, against a real redis-server.

Each role does its work with nothing refused (Redis's ACL log stays empty), and is refused what it
must not do; the ACL command's lines load; what is on disk stays readable; a restart keeps the journal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from helpers import PAN_MC, PAN_VISA, assert_eventually
from redis.asyncio import Redis
from test_settlement_support import (
    assert_applied_exactly_once,
    journal_decisions,
    new_pans,
    start_sims,
    stream_len,
    worker,
)
from test_standin_cli import authgw
from test_standin_redis_support import (
    GATEWAY,
    LEDGER_DB,
    OPERATOR,
    SETTLE,
    as_role,
    assert_nothing_refused,
    standin_file,
)
from test_standin_support import TOKEN_KEY, engine, request

from chaos.processes import ManagedProcess, free_port, start_redis
from chaos.redis_users import USERNAMES, RedisUsers
from standin import JournalKind, Reason, StandIn, load_config
from standin import keys as k
from standin.acl import acl_lines
from standin.errors import ReusedRequestIdError
from standin.redis_config import RedisRole
from standin.redis_io import make_redis_client
from standin.settlement import keys as sk
from standin.tokens import CardTokenizer
from standin.types import LimitKind, ReversalReason, ReversalStatus, StandInReversal


def reversal_of(original: Any, final_minor: int) -> StandInReversal:
    return StandInReversal(
        acquirer_id=original.acquirer_id,
        reversal_id=f"rev-{original.request_id}",
        original_request_id=original.request_id,
        pan=original.pan,
        final_amount_minor=final_minor,
        currency=original.currency,
        reason=ReversalReason.CARDHOLDER_CANCEL,
        transmitted_at=datetime.now(UTC),
    )


async def test_standin_decides_over_tls_as_the_gateway_user(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis, tmp_path: Path
) -> None:
    """From its config file: approvals, a static decline, a repeat, a reused id and a reversal, all
    recorded in Redis over TLS as authgw-gateway, and no command refused on the way."""
    config = load_config(standin_file(tmp_path, redis_users, tls_redis.port, (GATEWAY,)), {})
    async with StandIn.from_config(config) as e:
        first = request(PAN_VISA, amount_minor=2_000)
        approved = await e.decide(first, Reason.ALL_POOLS_FAILED)
        gambling = await e.decide(request(PAN_MC, mcc="7995"), Reason.ALL_POOLS_FAILED)
        again = await e.decide(first, Reason.ALL_POOLS_FAILED)
        with pytest.raises(ReusedRequestIdError):
            await e.decide(dataclasses.replace(first, amount_minor=9_999), Reason.ALL_POOLS_FAILED)
        reversed_ = await e.reverse(reversal_of(first, 500), store=True)
        backlog = await e.stream_backlog()  # the gateway's journal-depth metric
        clients = [c for c in await tls_admin.client_list() if c.get("user") == USERNAMES[GATEWAY]]
    assert approved.approved and approved.journal is JournalKind.REDIS
    assert (gambling.approved, gambling.response_code.value, gambling.journal) == (
        False,
        "57",
        JournalKind.REDIS,
    )
    assert again.decision_id == approved.decision_id
    assert (reversed_.status, reversed_.journal) == (ReversalStatus.APPLIED, JournalKind.REDIS)
    assert await tls_admin.xlen(k.stream_key(0)) == backlog.entries == 3  # two decisions, the reversal
    assert clients, "no connection of the gateway's user"
    await assert_nothing_refused(tls_admin)


async def test_local_backlog_moves_to_redis_as_the_gateway_user(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis, tmp_path: Path
) -> None:
    """Decisions made locally while Redis was unreachable are absorbed and appended as authgw-gateway."""
    sqlite = tmp_path / "gw.sqlite3"
    settings = as_role(redis_users, tls_redis.port, GATEWAY)
    async with engine(free_port(), sqlite, redis_settings=settings) as away:  # nothing listens there
        local = [await away.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in (PAN_VISA, PAN_MC)]
    assert {d.journal for d in local} == {JournalKind.SQLITE}
    async with engine(tls_redis.port, sqlite, redis_settings=settings) as back:
        await back.move_backlog()
        assert (await back.status()).local_backlog == 0
    assert await tls_admin.xlen(k.stream_key(0)) == 2
    await assert_nothing_refused(tls_admin)


@pytest.fixture(scope="module")
def sims(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess
) -> Iterator[dict[str, ManagedProcess]]:
    """Two issuer hosts sharing one ledger (plaintext: the issuer's side is not under test here)."""
    procs = start_sims(
        tmp_path_factory.mktemp("secure-sims"), f"redis://127.0.0.1:{redis_server.port}/{LEDGER_DB}"
    )
    yield procs
    for p in procs.values():
        p.stop()


async def test_settlement_settles_as_the_settle_user(
    redis_users: RedisUsers,
    tls_redis: ManagedProcess,
    tls_admin: Redis,
    sims: dict[str, ManagedProcess],
    tmp_path: Path,
) -> None:
    """A worker logged in as authgw-settle advises every decision once, dead-letters an entry it cannot
    read, and nothing it sends is refused."""
    port = tls_redis.port
    gateway, settle = as_role(redis_users, port, GATEWAY), as_role(redis_users, port, SETTLE)
    decisions = await journal_decisions(port, tmp_path / "gw.sqlite3", new_pans(6), redis_settings=gateway)
    await tls_admin.xadd(k.stream_key(0), {"entry": "decision", "decision_id": "unreadable"})
    async with worker(port, sims, redis_settings=settle):

        async def drained() -> None:
            assert await stream_len(tls_admin) == 0

        await assert_eventually(drained, timeout_s=15)
    await assert_applied_exactly_once(sims["a1"], decisions)
    assert await tls_admin.xlen(k.dead_key(0)) == 1
    await assert_nothing_refused(tls_admin)


async def test_operator_commands_run_as_the_operator_user(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis, tmp_path: Path
) -> None:
    """load-card-status, status, reconcile and both replays succeed as authgw-operator, unrefused."""
    config = standin_file(tmp_path, redis_users, tls_redis.port, (GATEWAY, SETTLE, OPERATOR))
    statuses = tmp_path / "status.csv"
    statuses.write_text(f"{PAN_VISA},lost\n")
    await tls_admin.xadd(k.dead_key(0), {"entry": "decision", "decision_id": "d-1", "dead_error": "x"})
    results = {
        cmd[0] if cmd[0] != "replay" else " ".join(cmd): await authgw(
            "standin", *cmd, "--config", str(config)
        )
        for cmd in (
            ("load-card-status", str(statuses)),
            ("status",),
            ("reconcile",),
            ("replay", "--dead-letters"),
            ("replay",),
        )
    }
    assert {name: code for name, (code, _, _) in results.items()} == dict.fromkeys(results, 0), results
    assert json.loads(results["replay --dead-letters"][1])["requeued"] == 1
    token = CardTokenizer(TOKEN_KEY).token(PAN_VISA)
    assert await tls_admin.get(k.card_status_key(token)) == b"lost"
    await assert_nothing_refused(tls_admin)


async def test_operator_command_as_the_gateway_user_is_refused_with_a_hint(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis, tmp_path: Path
) -> None:
    """Without [redis.operator], load-card-status logs in as the gateway: Redis refuses the write,
    and the command says which user it needs."""
    config = standin_file(tmp_path, redis_users, tls_redis.port, (GATEWAY,))
    statuses = tmp_path / "status.csv"
    statuses.write_text(f"{PAN_VISA},stolen\n")
    code, _, err = await authgw("standin", "load-card-status", str(statuses), "--config", str(config))
    assert code == 1 and "no permissions" in err and "[redis.operator]" in err
    assert await tls_admin.get(k.card_status_key(CardTokenizer(TOKEN_KEY).token(PAN_VISA))) is None


# -- who is refused ---------------------------------------------------------------------------------


async def test_a_client_without_our_certificate_is_refused(
    redis_users: RedisUsers, tls_redis: ManagedProcess
) -> None:
    """redis-cli over TLS without a client certificate is cut off in the handshake (with the gateway's
    certificate the same command reaches Redis, which asks for a user); a plaintext client too."""
    ca = redis_users.server_files().ca
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(tls_redis.port), "--tls", "--cacert", str(ca)]
    cert = redis_users.pki.files("gateway-client")
    refusals = tls_redis.tail_log(10_000).count("peer did not return a certificate")
    without, with_cert = [
        await asyncio.to_thread(
            subprocess.run, [*cli, *extra, "PING"], capture_output=True, text=True, timeout=10
        )
        for extra in ([], ["--cert", str(cert.cert), "--key", str(cert.key)])
    ]
    assert without.returncode != 0 and not without.stdout, without  # closed or reset: TLS 1.3 varies
    assert tls_redis.tail_log(10_000).count("peer did not return a certificate") == refusals + 1
    assert "NOAUTH" in with_cert.stdout, with_cert  # past TLS: `default` is off, a user is needed
    plain = Redis(host="127.0.0.1", port=tls_redis.port, socket_timeout=2, socket_connect_timeout=2)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await plain.ping()
    finally:
        await plain.aclose()


@pytest.mark.parametrize(
    ("username", "password_of"),
    [("", None), (USERNAMES[GATEWAY], "wrong"), ("default", "")],
    ids=["no user", "wrong password", "default user"],
)
async def test_a_fleet_certificate_alone_gets_nothing(
    redis_users: RedisUsers, tls_redis: ManagedProcess, username: str, password_of: str | None, tmp_path: Path
) -> None:
    """A valid fleet certificate without the user's password is refused: `default` is off."""
    settings = redis_users.settings(tls_redis.port, GATEWAY)
    if username:
        secret = tmp_path / "password"
        secret.write_text(password_of or "x")
        login = dataclasses.replace(settings.login, username=username, password_file=secret)
    else:
        login = dataclasses.replace(settings.login, username="", password_file=None)
    r = make_redis_client(dataclasses.replace(settings, login=login))
    try:
        with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
            await r.ping()
    finally:
        await r.aclose()


LIB = "#!lua name=evil\nredis.register_function('f', function() return 1 end)"
SET_STATUS = "return redis.call('SET', KEYS[1], 'active')"
TOKEN = "0" * 32
STATUS = k.card_status_key(TOKEN)
GATEWAY_REFUSED: list[tuple[str, ...]] = [
    ("FLUSHALL",),
    ("CONFIG", "GET", "*"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("ACL", "LIST"),
    ("GET", "bank:other"),
    ("SET", "bank:other", "1"),
    ("SET", STATUS, "active"),  # card statuses are the issuer's: read only
    ("DEL", STATUS),
    ("HSET", k.CARD_STATUS_INDEX, TOKEN, "active"),
    ("XRANGE", k.dead_key(0), "-", "+"),
    ("XACK", k.stream_key(0), "settlement", "0-1"),  # settlement's, with [redis.settle] configured
    ("HGETALL", sk.WORKERS_KEY),
    ("EVAL", "return 1", "0"),
    ("SCRIPT", "FLUSH"),
    ("FUNCTION", "LOAD", LIB),
    ("FCALL", "f", "0"),
]
SETTLE_REFUSED: list[tuple[str, ...]] = [
    ("FLUSHALL",),
    ("SCAN", "0"),
    ("XADD", k.stream_key(0), "*", "entry", "decision"),  # no forged journal entry
    ("XRANGE", k.dead_key(0), "-", "+"),
    ("HMGET", k.idempotency_key(TOKEN, "1001", "r-1"), "decision_id"),
    ("GET", STATUS),
    ("ZRANGE", k.spend_key(TOKEN, LimitKind.PURCHASE), "0", "-1"),
    ("SET", k.dedupe_key(0, "d-1"), "1"),
    ("HSCAN", k.CARD_STATUS_INDEX, "0"),
    ("FUNCTION", "LOAD", LIB),
]


async def _refused(redis_users: RedisUsers, port: int, role: RedisRole, command: tuple[str, ...]) -> str:
    r = make_redis_client(redis_users.settings(port, role))
    try:
        with pytest.raises(redis.exceptions.ResponseError) as caught:
            await r.execute_command(*command)
        return str(caught.value)
    finally:
        await r.aclose()


@pytest.mark.parametrize("command", GATEWAY_REFUSED, ids=lambda c: " ".join(c)[:40])
async def test_the_gateway_user_is_refused_outside_its_rules(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis, command: tuple[str, ...]
) -> None:
    """authgw-gateway may not administer Redis, list keys, touch keys outside stand-in's, write card
    statuses, run settlement's commands, or load functions."""
    message = await _refused(redis_users, tls_redis.port, GATEWAY, command)
    assert "NOPERM" in message or "no permissions" in message, message


@pytest.mark.parametrize("command", SETTLE_REFUSED, ids=lambda c: " ".join(c)[:40])
async def test_the_settle_user_is_refused_outside_its_rules(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis, command: tuple[str, ...]
) -> None:
    """authgw-settle may not append to the journal, read card keys, list keys or load functions."""
    message = await _refused(redis_users, tls_redis.port, SETTLE, command)
    assert "NOPERM" in message or "no permissions" in message, message


async def test_a_script_runs_with_its_callers_rules(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis
) -> None:
    """SCRIPT LOAD gives the gateway nothing more: its script may read a card status, not write it."""
    r = make_redis_client(redis_users.settings(tls_redis.port, GATEWAY))
    await tls_admin.set(STATUS, "stolen")
    try:
        read = await r.script_load("return redis.call('GET', KEYS[1])")
        assert await r.evalsha(read, 1, STATUS) == b"stolen"
        write = await r.script_load(SET_STATUS)
        with pytest.raises(redis.exceptions.ResponseError, match="can't access"):
            await r.evalsha(write, 1, STATUS)
    finally:
        await r.aclose()
    assert await tls_admin.get(STATUS) == b"stolen"


# -- the ACL command --------------------------------------------------------------------------------


async def test_acl_command_prints_the_lines_redis_loads(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis, tmp_path: Path
) -> None:
    """`authgw standin acl` prints `default` off and one line per configured user, which Redis loads."""
    config = standin_file(tmp_path, redis_users, tls_redis.port, (GATEWAY, SETTLE, OPERATOR))
    code, out, err = await authgw("standin", "acl", "--config", str(config))
    assert code == 0, err
    expected = acl_lines({r: (USERNAMES[r], redis_users.passwords[USERNAMES[r]]) for r in RedisRole})
    assert out.splitlines() == expected
    assert out.splitlines()[0].startswith("user default off")
    assert all(
        redis_users.passwords[name] not in out for name in USERNAMES.values()
    )  # hashed, never in clear
    aclfile = redis_users.directory / "users.acl"
    admin_line = aclfile.read_text().splitlines()[-1]
    aclfile.write_text(out + admin_line + "\n")
    assert await tls_admin.execute_command("ACL", "LOAD") == b"OK"


async def test_without_a_settle_user_the_gateway_line_carries_settlement(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tmp_path: Path
) -> None:
    """A gateway whose worker logs in as itself gets settlement's rules too; with --cluster, what
    redis-py's cluster client sends."""
    config = standin_file(tmp_path, redis_users, tls_redis.port, (GATEWAY,))
    code, out, _ = await authgw("standin", "acl", "--cluster", "--config", str(config))
    gateway_line = out.splitlines()[1]
    assert code == 0 and len(out.splitlines()) == 2
    assert "+xack" in gateway_line and "+cluster|slots" in gateway_line and "+readonly" in gateway_line


async def test_a_cluster_file_gets_the_cluster_rules_without_the_flag(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tmp_path: Path
) -> None:
    """`[redis] cluster = true` in the stand-in file is enough for the cluster client's rules."""
    config = standin_file(tmp_path, redis_users, tls_redis.port, (GATEWAY,))
    config.write_text(config.read_text().replace("[redis]\n", "[redis]\ncluster = true\n", 1))
    code, out, err = await authgw("standin", "acl", "--config", str(config))
    assert code == 0, err
    assert "+cluster|slots" in out.splitlines()[1] and "+readonly" in out.splitlines()[1]


# -- persistence -----------------------------------------------------------------------------------


async def test_aof_and_rdb_stay_readable_by_the_harness(
    redis_users: RedisUsers, tls_redis: ManagedProcess, tls_admin: Redis, tmp_path: Path
) -> None:
    """TLS and ACLs change nothing on disk: the AOF and an RDB snapshot are there for a PAN scan."""
    async with engine(
        tls_redis.port, tmp_path / "gw.sqlite3", redis_settings=as_role(redis_users, tls_redis.port, GATEWAY)
    ) as e:
        await e.decide(request(PAN_VISA), Reason.ALL_POOLS_FAILED)
    await tls_admin.bgsave()

    def saved() -> None:
        assert (tls_redis.workdir / "dump.rdb").exists()

    await assert_eventually(saved, timeout_s=10)
    aof = b"".join(p.read_bytes() for p in (tls_redis.workdir / "appendonlydir").glob("*.aof"))
    rdb = (tls_redis.workdir / "dump.rdb").read_bytes()
    for data in (aof, rdb):
        assert k.stream_key(0).encode() in data
        assert PAN_VISA.encode() not in data


async def test_the_journal_survives_a_redis_restart(redis_users: RedisUsers, tmp_path: Path) -> None:
    """Decisions journaled as the gateway's user are all there after Redis restarts from its AOF
    (Redis replays scripts' transactions as `default`, which therefore keeps its permissions)."""
    proc = start_redis(
        tmp_path / "redis", tls=redis_users.server_files(), aclfile=redis_users.write_aclfile()
    )
    try:
        settings = as_role(redis_users, proc.port, GATEWAY)
        async with engine(proc.port, tmp_path / "gw.sqlite3", redis_settings=settings) as e:
            decided = [await e.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in new_pans(3)]
        assert {d.journal for d in decided} == {JournalKind.REDIS}
        proc.kill()
        await asyncio.to_thread(proc.start)
        tls_admin = redis_users.admin_client(proc.port)
        try:

            async def replayed() -> None:
                try:
                    assert await tls_admin.xlen(k.stream_key(0)) == len(decided)
                except redis.exceptions.BusyLoadingError as exc:
                    raise AssertionError("still loading") from exc

            await assert_eventually(replayed, timeout_s=10)
            assert await tls_admin.acl_log() == []
        finally:
            await tls_admin.aclose()
    finally:
        proc.stop()
