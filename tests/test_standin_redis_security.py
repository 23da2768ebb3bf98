"""Stand-in and settlement over mutual TLS as least-privilege ACL users, against a real redis-server.

The module's Redis listens on TLS only (`--port 0 --tls-port`), requires a client certificate
of the fleet CA, and loads the ACL file `standin.acl` derives (gateway, settle and operator
users, `default` off) plus the harness's admin, which only the checks use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from helpers import PAN_MC, PAN_VISA, assert_eventually
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.credentials import CredentialProvider
from test_security_support import copy_files, reissue
from test_settlement_support import (
    assert_applied_exactly_once,
    journal_decisions,
    new_pans,
    start_sims,
    stream_len,
    worker,
)
from test_standin_cli import authgw
from test_standin_support import PAN_KEY, PATIENT, TOKEN_KEY, engine, flush_standin_keys, request

from authgw.security.devca import LEAVES, Authority, write_file
from chaos.pki import DevPki
from chaos.processes import ManagedProcess, free_port, start_redis
from chaos.redis_users import USERNAMES, RedisUsers
from chaos.topology import standin_toml
from standin import JournalKind, Reason, RedisSettings, StandIn, StandInDecision, load_config, lua
from standin import keys as k
from standin.acl import acl_line, acl_lines
from standin.errors import ReusedRequestIdError
from standin.redis_config import RedisRole
from standin.redis_io import make_redis_client
from standin.settlement import keys as sk
from standin.tokens import CardTokenizer
from standin.types import LimitKind, ReversalReason, ReversalStatus, StandInReversal

GATEWAY, SETTLE, OPERATOR = RedisRole.GATEWAY, RedisRole.SETTLE, RedisRole.OPERATOR
PATIENT_TOML = {"command_deadline": "2s", "socket_timeout": "2s", "connect_timeout": "1s"}
LEDGER_DB = 6  # the issuer simulators' ledger: its own database of the session's plaintext Redis


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> RedisUsers:
    """The development PKI and the harness's Redis users (passwords in files, mode 0600)."""
    root = tmp_path_factory.mktemp("redis-users")
    return RedisUsers(root / "users", DevPki(root / "pki"))


@pytest.fixture(scope="module")
def secure_redis(users: RedisUsers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """redis-server on a TLS port only, with the ACL file of every role; stopped by its PID."""
    proc = start_redis(
        tmp_path_factory.mktemp("secure-redis"), tls=users.server_files(), aclfile=users.write_aclfile()
    )
    yield proc
    proc.stop()


@pytest.fixture
async def admin(users: RedisUsers, secure_redis: ManagedProcess) -> AsyncIterator[Redis]:
    """The harness admin, with no stand-in key left and an empty ACL log."""
    r = users.admin_client(secure_redis.port)
    await flush_standin_keys(r)
    await r.acl_log_reset()
    yield r
    await r.aclose()


def as_role(users: RedisUsers, port: int, role: RedisRole) -> RedisSettings:
    """Patient deadlines (a loaded box must not flip to the local journal), logged in as `role`."""
    return dataclasses.replace(PATIENT, url=users.url(port), login=users.settings(port, role).login)


def standin_file(tmp_path: Path, users: RedisUsers, port: int, roles: tuple[RedisRole, ...]) -> Path:
    """A stand-in file on the secure Redis with the logins of `roles` (and the tests' keys)."""
    path = tmp_path / "standin.toml"
    section = {**users.redis_section(roles), **PATIENT_TOML}
    path.write_text(standin_toml(users.url(port), redis=section, token_key=TOKEN_KEY, pan_key=PAN_KEY))
    return path


async def assert_nothing_refused(admin: Redis) -> None:
    """Redis's ACL log is empty: no command our code sent was refused to its user."""
    denied = await admin.acl_log()
    assert denied == [], [(d["username"], d["context"], d["object"]) for d in denied]


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
    users: RedisUsers, secure_redis: ManagedProcess, admin: Redis, tmp_path: Path
) -> None:
    """From its config file: approvals, a static decline, a repeat, a reused id and a reversal, all
    recorded in Redis over TLS as authgw-gateway, and no command refused on the way."""
    config = load_config(standin_file(tmp_path, users, secure_redis.port, (GATEWAY,)), {})
    async with StandIn.from_config(config) as e:
        first = request(PAN_VISA, amount_minor=2_000)
        approved = await e.decide(first, Reason.ALL_POOLS_FAILED)
        gambling = await e.decide(request(PAN_MC, mcc="7995"), Reason.ALL_POOLS_FAILED)
        again = await e.decide(first, Reason.ALL_POOLS_FAILED)
        with pytest.raises(ReusedRequestIdError):
            await e.decide(dataclasses.replace(first, amount_minor=9_999), Reason.ALL_POOLS_FAILED)
        reversed_ = await e.reverse(reversal_of(first, 500), store=True)
        backlog = await e.stream_backlog()  # the gateway's journal-depth metric
        clients = [c for c in await admin.client_list() if c.get("user") == USERNAMES[GATEWAY]]
    assert approved.approved and approved.journal is JournalKind.REDIS
    assert (gambling.approved, gambling.response_code.value, gambling.journal) == (
        False,
        "57",
        JournalKind.REDIS,
    )
    assert again.decision_id == approved.decision_id
    assert (reversed_.status, reversed_.journal) == (ReversalStatus.APPLIED, JournalKind.REDIS)
    assert await admin.xlen(k.stream_key(0)) == backlog.entries == 3  # two decisions, the reversal
    assert clients, "no connection of the gateway's user"
    await assert_nothing_refused(admin)


async def test_local_backlog_moves_to_redis_as_the_gateway_user(
    users: RedisUsers, secure_redis: ManagedProcess, admin: Redis, tmp_path: Path
) -> None:
    """Decisions made locally while Redis was unreachable are absorbed and appended as authgw-gateway."""
    sqlite = tmp_path / "gw.sqlite3"
    settings = as_role(users, secure_redis.port, GATEWAY)
    async with engine(free_port(), sqlite, redis_settings=settings) as away:  # nothing listens there
        local = [await away.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in (PAN_VISA, PAN_MC)]
    assert {d.journal for d in local} == {JournalKind.SQLITE}
    async with engine(secure_redis.port, sqlite, redis_settings=settings) as back:
        await back.move_backlog()
        assert (await back.status()).local_backlog == 0
    assert await admin.xlen(k.stream_key(0)) == 2
    await assert_nothing_refused(admin)


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
    users: RedisUsers,
    secure_redis: ManagedProcess,
    admin: Redis,
    sims: dict[str, ManagedProcess],
    tmp_path: Path,
) -> None:
    """A worker logged in as authgw-settle advises every decision once, dead-letters an entry it cannot
    read, and nothing it sends is refused."""
    port = secure_redis.port
    gateway, settle = as_role(users, port, GATEWAY), as_role(users, port, SETTLE)
    decisions = await journal_decisions(port, tmp_path / "gw.sqlite3", new_pans(6), redis_settings=gateway)
    await admin.xadd(k.stream_key(0), {"entry": "decision", "decision_id": "unreadable"})
    async with worker(port, sims, redis_settings=settle):

        async def drained() -> None:
            assert await stream_len(admin) == 0

        await assert_eventually(drained, timeout_s=15)
    await assert_applied_exactly_once(sims["a1"], decisions)
    assert await admin.xlen(k.dead_key(0)) == 1
    await assert_nothing_refused(admin)


async def test_operator_commands_run_as_the_operator_user(
    users: RedisUsers, secure_redis: ManagedProcess, admin: Redis, tmp_path: Path
) -> None:
    """load-card-status, status, reconcile and both replays succeed as authgw-operator, unrefused."""
    config = standin_file(tmp_path, users, secure_redis.port, (GATEWAY, SETTLE, OPERATOR))
    statuses = tmp_path / "status.csv"
    statuses.write_text(f"{PAN_VISA},lost\n")
    await admin.xadd(k.dead_key(0), {"entry": "decision", "decision_id": "d-1", "dead_error": "x"})
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
    assert await admin.get(k.card_status_key(token)) == b"lost"
    await assert_nothing_refused(admin)


async def test_operator_command_as_the_gateway_user_is_refused_with_a_hint(
    users: RedisUsers, secure_redis: ManagedProcess, admin: Redis, tmp_path: Path
) -> None:
    """Without [redis.operator], load-card-status logs in as the gateway: Redis refuses the write,
    and the command says which user it needs."""
    config = standin_file(tmp_path, users, secure_redis.port, (GATEWAY,))
    statuses = tmp_path / "status.csv"
    statuses.write_text(f"{PAN_VISA},stolen\n")
    code, _, err = await authgw("standin", "load-card-status", str(statuses), "--config", str(config))
    assert code == 1 and "no permissions" in err and "[redis.operator]" in err
    assert await admin.get(k.card_status_key(CardTokenizer(TOKEN_KEY).token(PAN_VISA))) is None


# -- who is refused ---------------------------------------------------------------------------------


async def test_a_client_without_our_certificate_is_refused(
    users: RedisUsers, secure_redis: ManagedProcess
) -> None:
    """redis-cli over TLS without a client certificate is cut off in the handshake (with the gateway's
    certificate the same command reaches Redis, which asks for a user); a plaintext client too."""
    ca = users.server_files().ca
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(secure_redis.port), "--tls", "--cacert", str(ca)]
    cert = users.pki.files("gateway-client")
    refusals = secure_redis.tail_log(10_000).count("peer did not return a certificate")
    without, with_cert = [
        await asyncio.to_thread(
            subprocess.run, [*cli, *extra, "PING"], capture_output=True, text=True, timeout=10
        )
        for extra in ([], ["--cert", str(cert.cert), "--key", str(cert.key)])
    ]
    assert without.returncode != 0 and not without.stdout, without  # closed or reset: TLS 1.3 varies
    assert secure_redis.tail_log(10_000).count("peer did not return a certificate") == refusals + 1
    assert "NOAUTH" in with_cert.stdout, with_cert  # past TLS: `default` is off, a user is needed
    plain = Redis(host="127.0.0.1", port=secure_redis.port, socket_timeout=2, socket_connect_timeout=2)
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
    users: RedisUsers, secure_redis: ManagedProcess, username: str, password_of: str | None, tmp_path: Path
) -> None:
    """A valid fleet certificate without the user's password is refused: `default` is off."""
    settings = users.settings(secure_redis.port, GATEWAY)
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


async def _refused(users: RedisUsers, port: int, role: RedisRole, command: tuple[str, ...]) -> str:
    r = make_redis_client(users.settings(port, role))
    try:
        with pytest.raises(redis.exceptions.ResponseError) as caught:
            await r.execute_command(*command)
        return str(caught.value)
    finally:
        await r.aclose()


@pytest.mark.parametrize("command", GATEWAY_REFUSED, ids=lambda c: " ".join(c)[:40])
async def test_the_gateway_user_is_refused_outside_its_rules(
    users: RedisUsers, secure_redis: ManagedProcess, admin: Redis, command: tuple[str, ...]
) -> None:
    """authgw-gateway may not administer Redis, list keys, touch keys outside stand-in's, write card
    statuses, run settlement's commands, or load functions."""
    message = await _refused(users, secure_redis.port, GATEWAY, command)
    assert "NOPERM" in message or "no permissions" in message, message


@pytest.mark.parametrize("command", SETTLE_REFUSED, ids=lambda c: " ".join(c)[:40])
async def test_the_settle_user_is_refused_outside_its_rules(
    users: RedisUsers, secure_redis: ManagedProcess, admin: Redis, command: tuple[str, ...]
) -> None:
    """authgw-settle may not append to the journal, read card keys, list keys or load functions."""
    message = await _refused(users, secure_redis.port, SETTLE, command)
    assert "NOPERM" in message or "no permissions" in message, message


async def test_a_script_runs_with_its_callers_rules(
    users: RedisUsers, secure_redis: ManagedProcess, admin: Redis
) -> None:
    """SCRIPT LOAD gives the gateway nothing more: its script may read a card status, not write it."""
    r = make_redis_client(users.settings(secure_redis.port, GATEWAY))
    await admin.set(STATUS, "stolen")
    try:
        read = await r.script_load("return redis.call('GET', KEYS[1])")
        assert await r.evalsha(read, 1, STATUS) == b"stolen"
        write = await r.script_load(SET_STATUS)
        with pytest.raises(redis.exceptions.ResponseError, match="can't access"):
            await r.evalsha(write, 1, STATUS)
    finally:
        await r.aclose()
    assert await admin.get(STATUS) == b"stolen"


# -- the ACL command --------------------------------------------------------------------------------


async def test_acl_command_prints_the_lines_redis_loads(
    users: RedisUsers, secure_redis: ManagedProcess, admin: Redis, tmp_path: Path
) -> None:
    """`authgw standin acl` prints `default` off and one line per configured user, which Redis loads."""
    config = standin_file(tmp_path, users, secure_redis.port, (GATEWAY, SETTLE, OPERATOR))
    code, out, err = await authgw("standin", "acl", "--config", str(config))
    assert code == 0, err
    expected = acl_lines({r: (USERNAMES[r], users.passwords[USERNAMES[r]]) for r in RedisRole})
    assert out.splitlines() == expected
    assert out.splitlines()[0].startswith("user default off")
    assert all(users.passwords[name] not in out for name in USERNAMES.values())  # hashed, never in clear
    aclfile = users.directory / "users.acl"
    admin_line = aclfile.read_text().splitlines()[-1]
    aclfile.write_text(out + admin_line + "\n")
    assert await admin.execute_command("ACL", "LOAD") == b"OK"


async def test_without_a_settle_user_the_gateway_line_carries_settlement(
    users: RedisUsers, secure_redis: ManagedProcess, tmp_path: Path
) -> None:
    """A gateway whose worker logs in as itself gets settlement's rules too; with --cluster, what
    redis-py's cluster client sends."""
    config = standin_file(tmp_path, users, secure_redis.port, (GATEWAY,))
    code, out, _ = await authgw("standin", "acl", "--cluster", "--config", str(config))
    gateway_line = out.splitlines()[1]
    assert code == 0 and len(out.splitlines()) == 2
    assert "+xack" in gateway_line and "+cluster|slots" in gateway_line and "+readonly" in gateway_line


# -- persistence -----------------------------------------------------------------------------------


async def test_aof_and_rdb_stay_readable_by_the_harness(
    users: RedisUsers, secure_redis: ManagedProcess, admin: Redis, tmp_path: Path
) -> None:
    """TLS and ACLs change nothing on disk: the AOF and an RDB snapshot are there for a PAN scan."""
    async with engine(
        secure_redis.port, tmp_path / "gw.sqlite3", redis_settings=as_role(users, secure_redis.port, GATEWAY)
    ) as e:
        await e.decide(request(PAN_VISA), Reason.ALL_POOLS_FAILED)
    await admin.bgsave()

    def saved() -> None:
        assert (secure_redis.workdir / "dump.rdb").exists()

    await assert_eventually(saved, timeout_s=10)
    aof = b"".join(p.read_bytes() for p in (secure_redis.workdir / "appendonlydir").glob("*.aof"))
    rdb = (secure_redis.workdir / "dump.rdb").read_bytes()
    for data in (aof, rdb):
        assert k.stream_key(0).encode() in data
        assert PAN_VISA.encode() not in data


async def test_the_journal_survives_a_redis_restart(users: RedisUsers, tmp_path: Path) -> None:
    """Decisions journaled as the gateway's user are all there after Redis restarts from its AOF
    (Redis replays scripts' transactions as `default`, which therefore keeps its permissions)."""
    proc = start_redis(tmp_path / "redis", tls=users.server_files(), aclfile=users.write_aclfile())
    try:
        settings = as_role(users, proc.port, GATEWAY)
        async with engine(proc.port, tmp_path / "gw.sqlite3", redis_settings=settings) as e:
            decided = [await e.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in new_pans(3)]
        assert {d.journal for d in decided} == {JournalKind.REDIS}
        proc.kill()
        await asyncio.to_thread(proc.start)
        admin = users.admin_client(proc.port)
        try:

            async def replayed() -> None:
                try:
                    assert await admin.xlen(k.stream_key(0)) == len(decided)
                except redis.exceptions.BusyLoadingError as exc:
                    raise AssertionError("still loading") from exc

            await assert_eventually(replayed, timeout_s=10)
            assert await admin.acl_log() == []
        finally:
            await admin.aclose()
    finally:
        proc.stop()


# -- rotation --------------------------------------------------------------------------------------


async def test_rotating_the_client_certificate_keeps_deciding(
    users: RedisUsers,
    secure_redis: ManagedProcess,
    admin: Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gateway's certificate, about to expire, is replaced on disk while stand-in decides: every
    decision stays in Redis, and once the old certificate has expired and Redis dropped every
    connection, stand-in reconnects with the new one (Redis would refuse the old)."""
    caplog.set_level(logging.INFO, logger="standin.redis")
    pki = users.pki.directory
    mine = copy_files(pki, "gateway-client", tmp_path / "certs")
    spec = next(s for s in LEAVES if s.name == "gateway-client")
    expires = datetime.now(UTC) + timedelta(seconds=6)
    short = Authority.load(pki / "ca.crt", pki / "ca.key").issue(spec, now=expires - timedelta(days=825))
    write_file(mine.key, short.key_pem, 0o600)
    write_file(mine.cert, short.cert_pem, 0o644)
    path = standin_file(tmp_path, users, secure_redis.port, (GATEWAY,))
    path.write_text(
        path.read_text()
        .replace(str(users.pki.files("gateway-client").cert), str(mine.cert))
        .replace(str(users.pki.files("gateway-client").key), str(mine.key))
    )
    decisions: list[StandInDecision] = []
    async with StandIn.from_config(load_config(path, {})) as e:
        stop = asyncio.Event()

        async def keep_deciding() -> None:
            while not stop.is_set():
                decisions.append(await e.decide(request(new_pans(1)[0]), Reason.ALL_POOLS_FAILED))
                await asyncio.sleep(0.05)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(keep_deciding())
            await asyncio.sleep(0.5)
            reissue(pki, "gateway-client", mine)

            def rotated() -> None:
                assert "Redis client certificate" in caplog.text and "rotated" in caplog.text

            await assert_eventually(rotated, timeout_s=5)
            await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
            stop.set()
        during = len(decisions)
        await admin.execute_command("CLIENT", "KILL", "USER", USERNAMES[GATEWAY])
        decisions += [await e.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in new_pans(5)]
    assert during > 20
    assert [d.journal for d in decisions] == [JournalKind.REDIS] * len(decisions)
    assert await admin.xlen(k.stream_key(0)) == len(decisions)
    await assert_nothing_refused(admin)


async def test_a_new_password_is_used_without_a_restart(
    users: RedisUsers,
    secure_redis: ManagedProcess,
    admin: Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The password file is watched: give the user a second password, write it to the file, drop the
    first; once Redis dropped every connection stand-in logs in again with the new one."""
    caplog.set_level(logging.INFO, logger="standin.redis")
    name, old = USERNAMES[GATEWAY], users.passwords[USERNAMES[GATEWAY]]
    secret = tmp_path / "gateway.password"
    secret.write_text(old + "\n")
    path = standin_file(tmp_path, users, secure_redis.port, (GATEWAY,))
    path.write_text(path.read_text().replace(str(users.password_file(name)), str(secret)))
    try:
        async with StandIn.from_config(load_config(path, {})) as e:
            before = await e.decide(request(PAN_VISA), Reason.ALL_POOLS_FAILED)
            await admin.execute_command("ACL", "SETUSER", name, ">rotated-password")
            secret.write_text("rotated-password\n")

            def reread() -> None:
                assert "password file" in caplog.text and "re-read" in caplog.text

            await assert_eventually(reread)
            await admin.execute_command("ACL", "SETUSER", name, f"<{old}")
            await admin.execute_command("CLIENT", "KILL", "USER", name)
            after = await e.decide(request(PAN_MC), Reason.ALL_POOLS_FAILED)
    finally:
        await admin.execute_command("ACL", "SETUSER", name, f">{old}", "<rotated-password")
    assert (before.journal, after.journal) == (JournalKind.REDIS, JournalKind.REDIS)


class _StuckOnce(CredentialProvider):
    """Credentials that hang the first time they are asked (until cancelled), then answer."""

    def __init__(self, username: str, password: str) -> None:
        self.asked = 0
        self.credentials = (username, password)

    async def get_credentials_async(self) -> tuple[str, str]:
        self.asked += 1
        if self.asked == 1:
            await asyncio.Event().wait()
        return self.credentials


async def test_a_connect_cancelled_before_its_login_is_not_reused(
    users: RedisUsers, secure_redis: ManagedProcess
) -> None:
    """A deadline that cancels a connect after the TLS handshake but before AUTH leaves no socket in
    the pool that would send the next command unauthenticated (NOAUTH)."""
    name = USERNAMES[GATEWAY]
    credentials = _StuckOnce(name, users.passwords[name])
    # No retry: redis-py would hide the unauthenticated socket by reconnecting after NOAUTH, but a
    # script's reply ("unauthenticated multibulk length") is not retried, and fails the decision.
    settings = users.settings(secure_redis.port, GATEWAY, retries=0)
    r = make_redis_client(settings, credentials=credentials)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await r.ping()
        assert await r.ping() is True
        assert credentials.asked == 2  # a new connection logged in
    finally:
        await r.aclose()


# -- Redis Cluster (issue 18) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_node(users: RedisUsers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """A one-node Redis Cluster over TLS whose gateway user has the --cluster rules, and one without."""
    root = tmp_path_factory.mktemp("secure-cluster")
    name = USERNAMES[GATEWAY]
    lines = [
        *acl_lines({GATEWAY: (name, users.passwords[name])}, cluster=True),
        acl_line(
            "plain-gateway", users.passwords[name], acl_lines({GATEWAY: (name, "x")})[1].split(" ", 4)[4]
        ),
        users.write_aclfile().read_text().splitlines()[-1],  # the harness admin
    ]
    aclfile = root / "users.acl"
    aclfile.write_text("\n".join(lines) + "\n")
    proc = start_redis(root / "redis", cluster=True, tls=users.server_files(), aclfile=aclfile)
    yield proc
    proc.stop()


@pytest.mark.parametrize("username", [USERNAMES[GATEWAY], "plain-gateway"])
async def test_the_cluster_client_needs_the_cluster_rules(
    users: RedisUsers, cluster_node: ManagedProcess, username: str
) -> None:
    """redis-py's cluster client maps the slots and runs stand-in's append script with the --cluster
    rules; without them it cannot even start (CLUSTER SLOTS refused)."""
    admin = users.admin_client(cluster_node.port)
    if b"cluster_slots_assigned:16384" not in await admin.execute_command("CLUSTER", "INFO"):
        await admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)

    async def ok() -> None:
        assert b"cluster_state:ok" in await admin.execute_command("CLUSTER", "INFO")

    await assert_eventually(ok)
    await admin.acl_log_reset()
    f = users.pki.files("gateway-client")
    rc = RedisCluster(
        host="127.0.0.1", port=cluster_node.port, ssl=True, ssl_certfile=str(f.cert), ssl_keyfile=str(f.key),
        ssl_ca_certs=str(f.ca), username=username, password=users.passwords[USERNAMES[GATEWAY]],
    )  # fmt: skip
    stream, seen = k.stream_key(0), k.dedupe_key(0, f"d-{username}")
    try:
        if username == "plain-gateway":
            with pytest.raises(redis.exceptions.RedisClusterException):
                await rc.initialize()
            assert [d["object"] for d in await admin.acl_log()] == ["cluster|slots"]
        else:
            appended, _ = await rc.register_script(lua.APPEND)(
                keys=[stream, seen], args=[60_000, '["f","v"]']
            )
            assert appended == 1
            await assert_nothing_refused(admin)
    finally:
        await rc.aclose()
        await admin.aclose()
