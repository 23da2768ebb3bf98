"""How stand-in reaches Redis: the `[redis]` section of the stand-in file, and who logs in.

    [redis]
    url = "rediss://redis.authgw.test:6380/0"    # rediss:// = TLS; redis:// and unix:// only with insecure
    cert = "certs/gateway-client.crt"            # our client certificate (Redis: tls-auth-clients yes)
    key = "certs/gateway-client.key"
    ca = "certs/ca.crt"                          # the CA that signs Redis's server certificate
    username = "authgw-gateway"                  # our ACL user (`authgw standin acl` prints its rules)
    password_file = "/run/secrets/redis-gateway" # its password: the whole file, one trailing newline dropped
    # insecure = true                            # plaintext redis:// instead: development only, warned
    cluster = true                               # a Redis Cluster: the url's host:port is one seed node,
    nodes = ["10.0.0.2:6380", "10.0.0.3:6380"]   # these more (optional); redis_durable.py
    wait_replicas = 1                            # WAIT after every write an answer depends on
    wait_timeout = "50ms"                        # (default 1 with cluster, 0 = off on one Redis)

    [redis.settle]      # optional: every settlement worker (`authgw settle`, a gateway's own) logs in
    cert = ...          # as this user instead, with the same keys (url and timeouts are the section's)
    [redis.operator]    # optional: `authgw standin` operator commands log in as this user

One way to say TLS for every link (authgw.security.config: cert, key, ca, insecure). TLS
authenticates the link; the ACL user limits what this process may run on which keys. Redis
7.0 does not map a client certificate to a user, and every certificate of the fleet's CA is
accepted by Redis's TLS port, so the password is what tells the gateway's user from the
settlement worker's (and an acquirer's certificate from either).

The password comes from a file, never from the config itself nor from the environment: a
file is re-read for every new connection (rotate it without a restart: add the new password
to the user, replace the file, remove the old one), it does not leak into child processes,
`/proc/<pid>/environ` or crash reports the way an environment variable does, and it is
provisioned like the key files beside it (a secret volume, systemd LoadCredential).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from authgw.config import ConfigError, Section
from authgw.security import TransportSecurity
from authgw.security.config import TLS_KEYS, transport_security
from standin.redis_durable import Durability

__all__ = ["RedisLogin", "RedisRole", "RedisSettings", "redis_settings"]

_MS = timedelta(milliseconds=1)
_S = timedelta(seconds=1)
_USERNAME = r"[A-Za-z0-9._-]{1,64}"
_LOGIN_KEYS = (*TLS_KEYS, "username", "password_file")
_TUNING_KEYS = (
    "url", "connect_timeout", "socket_timeout", "command_deadline", "retries",
    "retry_backoff_cap", "max_connections", "probe_interval", "cluster", "nodes", "wait_replicas",
    "wait_timeout",
)  # fmt: skip


class RedisRole(enum.Enum):
    """Which process logs in: each has its own ACL user (standin/acl.py says what each may run)."""

    GATEWAY = "gateway"
    """A gateway's stand-in engine (and its settlement worker unless `[redis.settle]` is given)."""
    SETTLE = "settle"
    """Every settlement worker, when `[redis.settle]` is given."""
    OPERATOR = "operator"
    """`authgw standin ...` commands, when `[redis.operator]` is given."""


@dataclass(frozen=True)
class RedisLogin:
    """Who one process is to Redis: its TLS files (or plaintext by choice) and its ACL user."""

    security: TransportSecurity = field(default_factory=TransportSecurity.plaintext)
    """Our client certificate, key and Redis's CA; or insecure (plaintext, development only)."""
    username: str = ""
    """The ACL user; empty means Redis's `default` user (plaintext development setups only)."""
    password_file: Path | None = None
    """The file holding the user's password; None with no username."""

    @property
    def tls(self) -> bool:
        return self.security.tls is not None


@dataclass(frozen=True)
class RedisSettings:
    """How stand-in talks to Redis: tight deadlines so a dead Redis costs one short wait, not seconds."""

    url: str = "redis://127.0.0.1:6379/0"
    """Redis URL: rediss:// (TLS), or redis:// / unix:// with an insecure login."""
    connect_timeout: timedelta = timedelta(milliseconds=100)
    """TCP connect deadline (the TLS handshake included)."""
    socket_timeout: timedelta = timedelta(milliseconds=100)
    """Deadline for one reply once connected."""
    command_deadline: timedelta = timedelta(milliseconds=120)
    """Overall deadline of one call, retries included (asyncio.timeout around it)."""
    retries: int = 1
    """Retries after a connection error (stale pooled socket after a Redis restart); never after a timeout."""
    retry_backoff_cap: timedelta = timedelta(milliseconds=20)
    """Largest pause between retries (exponential with jitter from 5 ms)."""
    max_connections: int = 16
    """Redis calls in flight at once per engine (more wait for a slot within their deadline).

    Small on purpose: Redis runs one script at a time, so more connections add no throughput,
    and a burst on a cold pool opens one connection per slot at once (each a TCP handshake
    and redis-py's CLIENT SETINFO round trips). On a loaded 2-core box the slowest call of a
    burst of 100 decisions took 92-104 ms with 64 slots, close to the 120 ms deadline past which
    a decision goes local, and 47-59 ms with 16. Little's law at 1,000 decisions/s and ~3 ms
    per call: ~3 in flight."""
    probe_interval: timedelta = timedelta(milliseconds=200)
    """While Redis is down, how often one PING checks whether it is back."""
    cluster: bool = False
    """A Redis Cluster: redis-py's RedisCluster, the url's host:port and `nodes` as seed nodes."""
    nodes: tuple[tuple[str, int], ...] = ()
    """More seed nodes of the Cluster (host, port), besides the url's."""
    wait_replicas: int = 0
    """Replicas that must acknowledge each decision and journal write before the answer (WAIT)."""
    wait_timeout: timedelta = timedelta(milliseconds=50)
    """How long WAIT may take; past it the write is not durable (the answer goes the local way)."""
    login: RedisLogin = field(default_factory=RedisLogin)
    """Who this client logs in as (the gateway's login, unless `for_role` picked another)."""
    settle: RedisLogin | None = None
    """`[redis.settle]`: the settlement workers' login; None = they use `login`."""
    operator: RedisLogin | None = None
    """`[redis.operator]`: the operator commands' login; None = they use `login`."""
    file: str = ""
    """The file these settings came from (named in errors)."""

    def __post_init__(self) -> None:
        # A safety net for settings built in code or changed after load (the gateway's
        # `[standin] redis_url` override): the file's own keys were checked with their names.
        plaintext = not self.url.startswith("rediss://")
        for name, login in self.logins().items():
            if plaintext != login.security.insecure:
                scheme = self.url.split("://", 1)[0]
                fix = "use rediss:// with TLS files" if plaintext else "use redis:// for a plaintext login"
                raise ConfigError(
                    self.file or "<redis settings>",
                    "redis.url",
                    f"{scheme}:// does not match the {name.value} login "
                    f"({'insecure' if login.security.insecure else 'TLS'}); the URL may come from a "
                    "gateway's [standin] redis_url",
                    fix,
                )

    @property
    def durability(self) -> Durability:
        return Durability(replicas=self.wait_replicas, timeout=self.wait_timeout)

    def seed_nodes(self) -> list[tuple[str, int]]:
        """The url's host and port first, then `nodes`."""
        netloc = self.url.split("://", 1)[1].split("/", 1)[0]
        host, _, port = netloc.rpartition(":")
        return [(host or netloc, int(port) if port.isdigit() else 6379), *self.nodes]

    def logins(self) -> dict[RedisRole, RedisLogin]:
        """Every login configured, by role (the gateway's always)."""
        out = {RedisRole.GATEWAY: self.login}
        if self.settle is not None:
            out[RedisRole.SETTLE] = self.settle
        if self.operator is not None:
            out[RedisRole.OPERATOR] = self.operator
        return out

    def for_role(self, role: RedisRole) -> RedisSettings:
        """These settings logging in as `role` (its own login when configured, else the gateway's)."""
        return replace(self, login=self.logins().get(role, self.login))


def redis_settings(s: Section) -> RedisSettings:
    """The `[redis]` section (with `[redis.settle]` and `[redis.operator]`); ConfigError names the key."""
    d = RedisSettings()
    s.check_known([*_TUNING_KEYS, *_LOGIN_KEYS, "settle", "operator"])
    url = s.string("url", d.url, pattern=r"(redis|rediss|unix)://.+", fix="write rediss://host:port/db")
    if "@" in url.split("://", 1)[1].split("/", 1)[0]:
        s.fail("url", "holds a user or password", "give username and password_file instead")
    logins = {role: _login(s.table(role), url, sub=True) for role in ("settle", "operator") if s.has(role)}
    return _with_cluster(s, RedisSettings(
        url=url,
        connect_timeout=s.duration("connect_timeout", d.connect_timeout, minimum=_MS, maximum=5 * _S),
        socket_timeout=s.duration("socket_timeout", d.socket_timeout, minimum=_MS, maximum=5 * _S),
        command_deadline=s.duration("command_deadline", d.command_deadline, minimum=_MS, maximum=5 * _S),
        retries=s.integer("retries", d.retries, maximum=5),
        retry_backoff_cap=s.duration("retry_backoff_cap", d.retry_backoff_cap, maximum=_S),
        max_connections=s.integer("max_connections", d.max_connections, minimum=1, maximum=10_000),
        probe_interval=s.duration("probe_interval", d.probe_interval, minimum=10 * _MS, maximum=60 * _S),
        login=_login(s, url, sub=False),
        settle=logins.get("settle"),
        operator=logins.get("operator"),
        file=s.file,
    ))  # fmt: skip


def _login(s: Section, url: str, *, sub: bool) -> RedisLogin:
    """One login: TLS files or insecure (matching the URL's scheme), then the ACL user."""
    if sub:
        s.check_known(_LOGIN_KEYS)
    scheme = url.split("://", 1)[0]
    if scheme != "rediss" and not s.boolean("insecure", False):
        s.fail(
            "insecure",
            f"missing: {scheme}:// is plaintext",
            "use rediss:// with cert, key and ca; or set insecure = true (development only)",
        )
    security = transport_security(s)
    if scheme == "rediss" and security.insecure:
        s.fail("insecure", "is true but the url is rediss:// (TLS)", "remove insecure, or use redis://")
    username = s.string("username", "", pattern=f"({_USERNAME})?", fix="letters, digits, '.', '_' or '-'")
    password_file = s.path("password_file")
    if security.tls is not None and not username:
        s.fail(
            "username",
            "missing: over TLS stand-in logs in as its own ACL user",
            "name the user (`authgw standin acl` prints its rules) and its password_file",
        )
    if username and password_file is None:
        s.fail("password_file", f"missing: user {username} needs its password", "name the file holding it")
    if password_file is not None and not username:
        s.fail("username", "missing: password_file is given", "name the ACL user the password is for")
    return RedisLogin(security=security, username=username, password_file=password_file)


def _with_cluster(s: Section, settings: RedisSettings) -> RedisSettings:
    """cluster, nodes, wait_replicas (1 by default on a Cluster: its masters have replicas), wait_timeout."""
    cluster = s.boolean("cluster", False)
    if cluster and not settings.url.startswith(("redis://", "rediss://")):
        s.fail(
            "cluster", "needs a redis:// or rediss:// url (a Cluster has no unix socket)", "give host:port"
        )
    nodes: list[tuple[str, int]] = []
    for i, node in enumerate(s.strings("nodes", ())):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            s.fail(f"nodes[{i}]", f"{node!r} is not host:port", 'write "10.0.0.2:6380"')
        nodes.append((host, int(port)))
    if nodes and not cluster:
        s.fail("nodes", "given without cluster = true", "add cluster = true, or remove nodes")
    replicas = s.integer("wait_replicas", 1 if cluster else 0, maximum=5)
    timeout = s.duration("wait_timeout", RedisSettings.wait_timeout, minimum=_MS, maximum=5 * _S)
    if replicas and timeout >= settings.socket_timeout:
        s.fail("wait_timeout", f"must be shorter than socket_timeout ({settings.socket_timeout})", "lower it")
    return replace(
        settings, cluster=cluster, nodes=tuple(nodes), wait_replicas=replicas, wait_timeout=timeout
    )
