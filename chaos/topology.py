"""A local authgw topology on loopback: issuer pools, their agents, etcd, Redis, gateways.

Everything is a real process on a free port, started and stopped by PID:

    topo = Topology(workdir, TopologySpec(etcd=True, redis=True, gateways=2))
    topo.start()
    ... topo.sims["a1"].signal(SIGSTOP) ...
    topo.stop()

Issuer hosts of every pool share one issuer ledger (a Redis of the issuer's own,
separate from the gateways' Redis), as the hosts of a real issuer share its
core banking system: idempotency by request_id and decision_id is issuer-wide.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from redis.asyncio import Redis

from authgw.security import TlsFiles, TransportSecurity
from chaos.gateway_stubs import Credentials
from chaos.pki import ISSUER_SERVER_NAME, DevPki, plaintext_sections
from chaos.processes import (
    ManagedProcess,
    ProcessError,
    free_port,
    run_authgw,
    start_authgw,
    start_etcd,
    start_etcd_cluster,
    start_redis,
    wait_for_port,
)
from chaos.redis_cluster import LocalCluster, start_redis_cluster
from chaos.redis_users import RedisUsers
from chaos.sim_control import SimControl
from health import EtcdClient, parse_endpoints

__all__ = ["DEFAULT_POOLS", "Topology", "TopologySpec"]

DEFAULT_POOLS: Mapping[str, tuple[str, ...]] = {"primary": ("a1", "a2"), "secondary": ("b1", "b2")}


@dataclass(frozen=True)
class TopologySpec:
    """What to start."""

    pools: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_POOLS))
    etcd: bool = False  # membership from etcd via health agents (else static pools)
    etcd_nodes: int = 1
    redis: bool = False  # the gateways' Redis (stand-in counters and journal)
    redis_tls: bool | None = None  # TLS + the ACL users of `authgw standin acl` (None: as `tls`)
    redis_cluster: bool = False  # that Redis as a Cluster of 3 masters + 3 replicas (WAIT 1)
    gateways: int = 1
    gateway_workers: int = 1  # processes per gateway sharing its port (serve --workers)
    attempt_timeout_ms: int = 400
    deadline_ms: int = 2000
    gateway_extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # more TOML sections
    sim_args: tuple[str, ...] = ()
    tls: bool = True  # mutual TLS on every link, etcd with auth and roles (False: plaintext, said)
    standin_policy_toml: str = ""  # TOML appended to the stand-in file: its [policy] tables
    standin_redis: Mapping[str, Any] = field(default_factory=dict)  # more [redis] keys of that file
    # Issuer hosts speak ISO 8583 to the gateways (the simulators' --iso8583-listen port, members
    # with protocol = "iso8583"); their control port stays gRPC. `iso8583_pool`: [pools.iso8583].
    iso8583_issuers: bool = False
    iso8583_pool: Mapping[str, Any] = field(default_factory=dict)
    metrics: bool = False  # each gateway exports Prometheus metrics on a port of its own (metrics_urls)
    # Gateways also listen for ISO 8583 acquirers ([iso8583_listen], mutual TLS as their gRPC port).
    iso8583_acquirers: bool = False


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(doc: Mapping[str, Any]) -> str:
    """Write a config document (tables of scalars, plus arrays of tables) as TOML."""
    lines: list[str] = []
    for name, table in doc.items():
        if isinstance(table, list):
            for item in table:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)


def standin_toml(
    redis_url: str,
    *,
    token_key: bytes | None = None,
    pan_key: bytes | None = None,
    redis: Mapping[str, Any] | None = None,
) -> str:
    """A stand-in config with the default policy; keys inline (harness only: production uses env).

    `redis`: the rest of `[redis]` for a rediss:// URL, its TLS files and ACL logins
    (`RedisUsers.redis_section()`); without it a redis:// URL is written `insecure = true`.
    """
    token = base64.b64encode(token_key or os.urandom(32)).decode()
    pan = base64.b64encode(pan_key or os.urandom(32)).decode()
    section = dict(redis) if redis is not None else {}
    if redis is None and not redis_url.startswith("rediss://"):
        section["insecure"] = True
    return to_toml(
        {
            "redis": {"url": redis_url, **section},
            "keys": {"token_key_b64": token, "pan_key_b64": pan, "token_key_env": "AUTHGW_TEST_UNSET_TOKEN"}
            | {"pan_key_env": "AUTHGW_TEST_UNSET_PAN"},
        }
    )


class Topology:
    """Starts and stops a whole local topology."""

    def __init__(self, workdir: Path, spec: TopologySpec | None = None) -> None:
        self.workdir = workdir
        self.spec = spec or TopologySpec()
        self.etcd: list[ManagedProcess] = []
        self.redis: ManagedProcess | None = None
        self.ledger: ManagedProcess | None = None
        self.redis_users: RedisUsers | None = None
        self.redis_cluster: LocalCluster | None = None
        self.pki = DevPki(workdir / "pki") if self.spec.tls else None
        self.sims: dict[str, ManagedProcess] = {}
        self.iso_listen_ports: dict[int, int] = {}  # gateway index -> its ISO 8583 listener
        self.iso_ports: dict[str, int] = {}  # member -> its ISO 8583 port (iso8583_issuers)
        self.agents: dict[str, ManagedProcess] = {}
        self.gateways: list[ManagedProcess] = []
        self.metrics_ports: dict[int, int] = {}  # gateway index -> its Prometheus port (spec.metrics)
        self.pool_of: dict[str, str] = {m: p for p, ms in self.spec.pools.items() for m in ms}

    @property
    def metrics_urls(self) -> list[str]:
        """Each gateway's Prometheus endpoint, in gateway order (spec.metrics)."""
        return [f"http://127.0.0.1:{port}/metrics" for _, port in sorted(self.metrics_ports.items())]

    @property
    def etcd_endpoints(self) -> list[str]:
        scheme = "https" if self.pki is not None else "http"
        return [f"{scheme}://127.0.0.1:{e.port}" for e in self.etcd]

    def etcd_args(self, identity: str = "operator") -> list[str]:
        """`--etcd ...` and the TLS flags of an authgw command acting as `identity` (a devca leaf)."""
        args = ["--etcd", ",".join(self.etcd_endpoints)]
        if self.pki is None:
            return [*args, "--etcd-insecure"]
        f = self.pki.files(identity)
        return [*args, "--etcd-cert", str(f.cert), "--etcd-key", str(f.key), "--etcd-ca", str(f.ca)]

    def etcd_client(self, identity: str = "etcd-root", *, request_timeout_s: float = 2.0) -> EtcdClient:
        """A client of the topology's etcd as `identity` (root by default: the harness's own checks)."""
        endpoints = parse_endpoints(",".join(self.etcd_endpoints))
        if self.pki is None:
            return EtcdClient(endpoints, request_timeout_s=request_timeout_s)
        security = TransportSecurity.mutual_tls(self.pki.files(identity))
        return EtcdClient(endpoints, request_timeout_s=request_timeout_s, security=security)

    @property
    def control_tls(self) -> TlsFiles | None:
        """What the harness presents to the issuer simulators' control service (None: plaintext)."""
        return None if self.pki is None else self.pki.files("operator")

    def sim_control(self, member: str, *, timeout_s: float = 5.0) -> SimControl:
        """The control service of simulator `member` (faults, report, books)."""
        return SimControl(self.sims[member].address, timeout_s=timeout_s, tls=self.control_tls)

    def operator_env(self, identity: str = "operator") -> dict[str, str]:
        """Environment an operator's `authgw` commands read etcd and its certificate from."""
        env = {"AUTHGW_ETCD": ",".join(self.etcd_endpoints)}
        if self.pki is not None:
            f = self.pki.files(identity)
            env |= {
                "AUTHGW_ETCD_CERT": str(f.cert),
                "AUTHGW_ETCD_KEY": str(f.key),
                "AUTHGW_ETCD_CA": str(f.ca),
            }
        return env

    def acquirer_channel(self, address: str, acquirer_id: str = "1001") -> grpc.aio.Channel:
        """A channel to a gateway as acquirer `acquirer_id` (its certificate under TLS)."""
        if self.pki is None:
            return grpc.aio.insecure_channel(address)
        return grpc.aio.secure_channel(address, self.pki.acquirer_credentials(acquirer_id))

    @property
    def iso8583_targets(self) -> list[str]:
        """The gateways' ISO 8583 listeners, in gateway order (iso8583_acquirers)."""
        return [f"127.0.0.1:{self.iso_listen_ports[i]}" for i in range(len(self.gateways))]

    def acquirer_ssl(self, acquirer_id: str) -> ssl.SSLContext:
        """What acquirer `acquirer_id` connects to an ISO 8583 listener with (TLS topologies)."""
        assert self.pki is not None
        files = self.pki.acquirer_files(acquirer_id)
        context = ssl.create_default_context(cafile=str(files.ca))
        context.load_cert_chain(files.cert, files.key)
        return context

    @property
    def acquirer_credentials(self) -> Credentials | None:
        """What each acquirer presents to the gateways (None: plaintext gateways)."""
        return None if self.pki is None else self.pki.acquirer_credentials

    @property
    def redis_url(self) -> str:
        if self.redis_cluster is not None:
            return self.redis_cluster.url
        assert self.redis is not None
        if self.redis_users is not None:
            return self.redis_users.url(self.redis.port)
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def redis_admin(self) -> Redis:
        """A client of the gateways' Redis with every right (the harness's checks, never the product)."""
        assert self.redis is not None
        if self.redis_users is not None:
            return self.redis_users.admin_client(self.redis.port)
        return Redis.from_url(self.redis_url)

    def processes(self) -> Iterator[ManagedProcess]:
        yield from self.gateways
        yield from self.agents.values()
        yield from self.sims.values()
        yield from self.etcd
        if self.redis is not None:
            yield self.redis
        if self.redis_cluster is not None:
            yield from self.redis_cluster.nodes
        if self.ledger is not None:
            yield self.ledger

    def start(self) -> Topology:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.ledger = start_redis(self.workdir / "ledger")
        redis_tls = self.spec.tls if self.spec.redis_tls is None else self.spec.redis_tls
        if self.spec.redis and redis_tls:
            pki = self.pki or DevPki(self.workdir / "pki")
            self.redis_users = RedisUsers(self.workdir / "redis-users", pki)
            users = self.redis_users
            if self.spec.redis_cluster:
                self.redis_cluster = start_redis_cluster(self.workdir / "redis-cluster", users=users)
            else:
                self.redis = start_redis(
                    self.workdir / "redis", tls=users.server_files(), aclfile=users.write_aclfile()
                )
        elif self.spec.redis_cluster:
            self.redis_cluster = start_redis_cluster(self.workdir / "redis-cluster")
        elif self.spec.redis:
            self.redis = start_redis(self.workdir / "redis")
        if self.spec.etcd:
            self._start_etcd()
        for member, pool in self.pool_of.items():
            self.start_sim(member, pool)
        if self.spec.etcd:
            for member in self.sims:
                self.start_agent(member)
            self.wait_registered(set(self.sims))
        for i in range(self.spec.gateways):
            self.start_gateway(i)

    def _start_etcd(self) -> None:
        """etcd; under TLS with client-certificate auth, its users and roles made by `authgw etcd-auth`."""
        tls = None if self.pki is None else self.pki.files("etcd")
        workdir, nodes = self.workdir / "etcd", self.spec.etcd_nodes
        if nodes == 1:
            self.etcd = [start_etcd(workdir, tls=tls, client_cert_auth=tls is not None)]
        else:
            self.etcd = start_etcd_cluster(workdir, nodes, tls=tls, client_cert_auth=tls is not None)
        if self.pki is None:
            return
        roles = [arg for pool in self.spec.pools for arg in ("--pool", pool)]
        roles += [arg for i in range(3) for arg in ("--gateway", f"gw-{i + 1}")]
        roles += ["--operator", "operator", "--operator", "operator2", "--reader", "authgw-settle"]
        # idempotent; a cluster just started may still be electing (make chaos once saw etcd-down's
        # three members not answer RoleList in time): tried three times, 2 s apart
        for attempt in range(3):
            out = run_authgw(["etcd-auth", *self.etcd_args("etcd-root"), *roles])
            if out.returncode == 0 or "did not answer in time" not in out.stderr or attempt == 2:
                break
            time.sleep(2.0)
        if out.returncode != 0:
            raise ProcessError(f"authgw etcd-auth failed: {out.stderr.strip()[-500:]}")

    def start_sim(self, member: str, pool: str, port: int | None = None) -> ManagedProcess:
        assert self.ledger is not None
        port = port or free_port()
        args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", pool, "--member", member]
        args += ["--ledger", f"redis://127.0.0.1:{self.ledger.port}/0", *self.spec.sim_args]
        if self.pki is not None:
            args += self.pki.issuer_sim_args(pool)
        if self.spec.iso8583_issuers:
            iso_port = self.iso_ports.setdefault(member, free_port())
            args += ["--iso8583-listen", f"127.0.0.1:{iso_port}"]
        self.sims[member] = start_authgw(self.workdir, f"sim-{member}", args, port)
        if self.spec.iso8583_issuers:
            wait_for_port(self.iso_ports[member])
        return self.sims[member]

    def member_address(self, member: str) -> str:
        """Where gateways reach `member`: its ISO 8583 port (iso8583_issuers) or its gRPC one."""
        if self.spec.iso8583_issuers:
            return f"127.0.0.1:{self.iso_ports[member]}"
        return self.sims[member].address

    def restart_sim(self, member: str) -> ManagedProcess:
        """Start a killed simulator again on its old port (its agent re-registers it)."""
        old = self.sims[member]
        old.kill()
        return self.start_sim(member, self.pool_of[member], old.port)

    def agent_args(self, member: str, pool: str | None = None) -> list[str]:
        """`authgw health-agent` arguments for `member` (its pool's etcd user and probe certificate)."""
        pool = pool or self.pool_of[member]
        args = ["health-agent", *self.etcd_args(f"agent-{pool}"), "--pool", pool]
        address = self.member_address(member)
        args += ["--member", member, "--address", address, "--ttl", "3", "--probe-interval", "0.5"]
        if self.spec.iso8583_issuers:
            args += ["--protocol", "iso8583"]
        if self.pki is None:
            return [*args, "--probe-insecure"]
        f = self.pki.files(f"agent-{pool}")
        args += ["--probe-cert", str(f.cert), "--probe-key", str(f.key), "--probe-ca", str(f.ca)]
        return [*args, "--probe-server-name", ISSUER_SERVER_NAME.format(pool=pool)]

    def start_agent(self, member: str) -> ManagedProcess:
        args = self.agent_args(member)
        self.agents[member] = start_authgw(
            self.workdir, f"agent-{member}", args, self.etcd[0].port, wait_port=False
        )
        return self.agents[member]

    def registered_members(self) -> set[str]:
        """Members whose agent holds a key in etcd right now (asked with etcdctl)."""
        tls: list[str] = []
        if self.pki is not None:
            f = self.pki.files("etcd-root")
            tls = [f"--cacert={f.ca}", f"--cert={f.cert}", f"--key={f.key}"]
        out = subprocess.run(
            ["etcdctl", "--endpoints", ",".join(self.etcd_endpoints), "--command-timeout=2s", *tls,
             "get", "--prefix", "--keys-only", "/authgw/pools/"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        return {line.rsplit("/", 1)[1] for line in out.stdout.split() if "/members/" in line}

    def wait_registered(self, members: set[str], timeout_s: float = 15.0) -> None:
        """Block until every member in `members` is registered by its agent."""
        deadline = time.monotonic() + timeout_s
        while not members <= self.registered_members():
            if time.monotonic() > deadline:
                raise ProcessError(f"agents did not register {sorted(members)} within {timeout_s}s")
            time.sleep(0.1)  # harness set-up, never on an event loop

    def gateway_config(self, index: int, port: int) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "gateway": {
                "listen": f"127.0.0.1:{port}",
                "instance": f"gw-{index + 1}",
                "drain_timeout": "3s",
            },
            **self._security_sections(index),
            "routing": {
                "attempt_timeout": f"{self.spec.attempt_timeout_ms}ms",
                "deadline": f"{self.spec.deadline_ms}ms",
            },
        }
        if self.spec.redis:
            standin = self.workdir / "standin.toml"
            if not standin.exists():
                logins = self.redis_users.redis_section() if self.redis_users is not None else None
                if self.spec.redis_cluster:  # a seed node in the url: the client finds the others
                    logins = {**(logins or {"insecure": True}), "cluster": True}
                if self.spec.standin_redis:
                    plain = {} if self.redis_url.startswith("rediss://") else {"insecure": True}
                    logins = {**(logins or plain), **self.spec.standin_redis}
                standin.write_text(standin_toml(self.redis_url, redis=logins) + self.spec.standin_policy_toml)
            doc["standin"] = {"config": str(standin), "sqlite_path": f"gw-{index + 1}.sqlite3"}
        if self.spec.metrics:
            port = self.metrics_ports.setdefault(index, free_port())
            doc["telemetry"] = {"exporter": "none", "prometheus_listen": f"127.0.0.1:{port}"}
        if self.spec.iso8583_acquirers:
            iso_port = self.iso_listen_ports.setdefault(index, free_port())
            doc["iso8583_listen"] = {"listen": f"127.0.0.1:{iso_port}"}
        for section, values in self.spec.gateway_extra.items():
            doc.setdefault(section, {}).update(values)
        doc["pools"] = [
            {
                "name": pool,
                "priority": i + 1,
                "members": [self._member_entry(m) for m in members],
                **({"server_name": ISSUER_SERVER_NAME.format(pool=pool)} if self.pki is not None else {}),
                **({"iso8583": dict(self.spec.iso8583_pool)} if self.spec.iso8583_pool else {}),
            }
            for i, (pool, members) in enumerate(self.spec.pools.items())
        ]
        return doc

    def _member_entry(self, member: str) -> dict[str, Any]:
        entry = {"name": member, "address": self.member_address(member)}
        return entry | {"protocol": "iso8583"} if self.spec.iso8583_issuers else entry

    def _security_sections(self, index: int) -> dict[str, Any]:
        etcd = self.etcd_endpoints if self.spec.etcd else None
        if self.pki is None:
            return plaintext_sections(etcd_endpoints=etcd)
        return self.pki.gateway_sections(etcd_endpoints=etcd, instance=f"gw-{index + 1}")

    def start_gateway(self, index: int, port: int | None = None) -> ManagedProcess:
        port = port or free_port()
        path = self.workdir / f"gateway-{index + 1}.toml"
        path.write_text(to_toml(self.gateway_config(index, port)))
        args = ["serve", "--config", str(path), "--workers", str(self.spec.gateway_workers)]
        proc = start_authgw(self.workdir, f"gw-{index + 1}", args, port)
        if index < len(self.gateways):
            self.gateways[index] = proc
        else:
            self.gateways.append(proc)
        return proc

    def stop(self) -> None:
        """Stop everything, gateways first (they drain), then agents, hosts, etcd, Redis."""
        for proc in self.processes():
            with contextlib.suppress(Exception):
                proc.stop()
