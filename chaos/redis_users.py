"""The harness's Redis with TLS and ACL users: the server's files, each role's login, an admin for checks.

    users = RedisUsers(workdir / "redis-users", DevPki(workdir / "pki"))
    redis = start_redis(workdir / "redis", tls=users.server_files(), aclfile=users.write_aclfile())
    standin_toml(users.url(redis.port), redis=users.redis_section())   # [redis] with its logins
    admin = users.admin_client(redis.port)                             # the harness's own checks

The product's users come from `standin.acl` (what `authgw standin acl` prints): gateway
(certificate gateway-client), settle (settle) and operator (operator). The harness adds one
user of its own, `harness-admin` (every command, every key), for what tests and
experiments look at (flushing, dumping every key for the PAN scans, BGSAVE): it is never
part of a stand-in file. Passwords are random, one file each (mode 0600), kept across runs
of the same directory.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from authgw.security import TlsFiles, TransportSecurity
from chaos.pki import DevPki
from standin import RedisSettings
from standin.acl import acl_line, acl_lines
from standin.redis_config import RedisLogin, RedisRole
from standin.redis_io import redis_pool

__all__ = ["ADMIN", "LEAVES", "USERNAMES", "RedisUsers"]

USERNAMES = {
    RedisRole.GATEWAY: "authgw-gateway",
    RedisRole.SETTLE: "authgw-settle",
    RedisRole.OPERATOR: "authgw-operator",
}
LEAVES = {RedisRole.GATEWAY: "gateway-client", RedisRole.SETTLE: "settle", RedisRole.OPERATOR: "operator"}
"""The devca leaf whose certificate each role presents."""
ADMIN = "harness-admin"


class RedisUsers:
    """Passwords, ACL file and logins of one harness Redis (files under `directory`)."""

    def __init__(self, directory: Path, pki: DevPki) -> None:
        self.directory = directory
        self.pki = pki
        directory.mkdir(parents=True, exist_ok=True)
        self.passwords = {name: self._password(name) for name in [*USERNAMES.values(), ADMIN]}

    def _password(self, username: str) -> str:
        path = self.password_file(username)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip()

    def password_file(self, username: str) -> Path:
        return self.directory / f"{username}.password"

    def server_files(self) -> TlsFiles:
        """Redis's server certificate and key, and the fleet CA its clients' certificates chain to."""
        return self.pki.files("redis")

    def write_aclfile(
        self, roles: tuple[RedisRole, ...] = tuple(RedisRole), *, cluster: bool = False
    ) -> Path:
        """The product's lines for `roles` plus the harness admin, written to `users.acl`."""
        users = {role: (USERNAMES[role], self.passwords[USERNAMES[role]]) for role in roles}
        lines = [*acl_lines(users, cluster=cluster), acl_line(ADMIN, self.passwords[ADMIN], "~* &* +@all")]
        path = self.directory / "users.acl"
        path.write_text("\n".join(lines) + "\n")
        return path

    @staticmethod
    def url(port: int, db: int = 0) -> str:
        return f"rediss://127.0.0.1:{port}/{db}"

    def login(self, role: RedisRole) -> dict[str, str]:
        """A login's keys in a stand-in file: its certificate, the fleet CA, its user and password file."""
        username = USERNAMES[role]
        return {
            **self.pki.section(LEAVES[role]),
            "username": username,
            "password_file": str(self.password_file(username)),
        }

    def redis_section(self, roles: tuple[RedisRole, ...] = tuple(RedisRole)) -> dict[str, Any]:
        """`[redis]` without its url: the gateway's login, and `settle` / `operator` when in `roles`."""
        section: dict[str, Any] = self.login(RedisRole.GATEWAY)
        for role in roles:
            if role is not RedisRole.GATEWAY:
                section[role.value] = self.login(role)
        return section

    def settings(self, port: int, role: RedisRole = RedisRole.GATEWAY, **tuning: Any) -> RedisSettings:
        """RedisSettings logging in as `role` (for clients built in code, e.g. tests' engines)."""
        files = self.pki.files(LEAVES[role])
        login = RedisLogin(
            security=TransportSecurity.mutual_tls(files),
            username=USERNAMES[role],
            password_file=self.password_file(USERNAMES[role]),
        )
        return RedisSettings(url=self.url(port), login=login, **tuning)

    def admin_client(self, port: int) -> Redis:
        """The harness admin over TLS (the operator's certificate): for checks, never for the product."""
        return Redis.from_pool(redis_pool(self.admin_settings(port)))

    def admin_settings(self, port: int) -> RedisSettings:
        """The harness admin's login (the operator's certificate), patient deadlines."""
        security = TransportSecurity.mutual_tls(self.pki.files(LEAVES[RedisRole.OPERATOR]))
        login = RedisLogin(security, ADMIN, self.password_file(ADMIN))
        timeout = timedelta(seconds=5)
        return RedisSettings(url=self.url(port), socket_timeout=timeout, connect_timeout=timeout, login=login)
