"""Shared builders for the Redis TLS + ACL tests (no tests here); their fixtures (redis_users,
tls_redis, tls_admin) are in conftest.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from redis.asyncio import Redis
from test_standin_support import PAN_KEY, PATIENT, TOKEN_KEY

from chaos.redis_users import RedisUsers
from chaos.topology import standin_toml
from standin import RedisSettings
from standin.redis_config import RedisRole

GATEWAY, SETTLE, OPERATOR = RedisRole.GATEWAY, RedisRole.SETTLE, RedisRole.OPERATOR
PATIENT_TOML = {"command_deadline": "2s", "socket_timeout": "2s", "connect_timeout": "1s"}
LEDGER_DB = 6  # the issuer simulators' ledger: its own database of the session's plaintext Redis


def as_role(users: RedisUsers, port: int, role: RedisRole) -> RedisSettings:
    """Patient deadlines (a loaded box must not flip to the local journal), logged in as `role`."""
    return dataclasses.replace(PATIENT, url=users.url(port), login=users.settings(port, role).login)


def standin_file(
    tmp_path: Path, users: RedisUsers, port: int, roles: tuple[RedisRole, ...], **gateway: str
) -> Path:
    """A stand-in file on the secure Redis with the logins of `roles` (and the tests' keys);
    `gateway` replaces keys of the gateway's login (cert, key, password_file...)."""
    path = tmp_path / "standin.toml"
    section = {**users.redis_section(roles), **PATIENT_TOML, **gateway}
    path.write_text(standin_toml(users.url(port), redis=section, token_key=TOKEN_KEY, pan_key=PAN_KEY))
    return path


async def assert_nothing_refused(admin: Redis) -> None:
    """Redis's ACL log is empty: no command our code sent was refused to its user."""
    denied = await admin.acl_log()
    assert denied == [], [(d["username"], d["context"], d["object"]) for d in denied]
