"""Gateway configuration: one TOML file, every section typed and validated at load.

The file is read once by `authgw.config` (the one TOML reader): the gateway's own
sections here, `[standin]` (the stand-in file it names, loaded with its secrets),
`[settlement]` and `[telemetry]` by the packages that own them. `authgw serve`,
`authgw settle` and every operator command take this same file and find exactly
what the gateway uses (the local journal's path included).

Durations are strings with a unit (`deadline = "2s"`, `attempt_timeout = "400ms"`)
and `timedelta` once loaded; the `*_s` properties give the seconds the hot path
computes with. Every error names the file, the key and the fix. The documented
example is config/gateway.example.toml.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from authgw.config import ConfigError, Section, read_toml
from authgw.observability import TelemetrySettings
from authgw.observability.settings import telemetry_from_section
from authgw.security import TransportSecurity
from authgw.security.config import TLS_KEYS
from gateway.admission import AdmissionConfig, admission_config
from gateway.config_iso8583 import Iso8583ListenConfig, iso8583_listen_config, issuer_link_settings
from gateway.config_security import SecurityConfig, security_config
from gateway.edges.iso8583_issuer_link import LinkSettings
from standin import StandInConfig
from standin import load_config as load_standin_config
from standin.settlement import SettlementSettings, load_settlement_settings

__all__ = [
    "ConfigError",
    "DeclineStormConfig",
    "GatewayConfig",
    "MemberConfig",
    "OutlierConfig",
    "PoolConfig",
    "RoutingConfig",
    "load_config",
    "parse_config",
]

_S = timedelta(seconds=1)
_MS = timedelta(milliseconds=1)
GRPC, ISO8583 = "grpc", "iso8583"  # a pool member's protocol


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """A static pool member (a seed when etcd is configured)."""

    name: str
    address: str  # host:port of the issuer host's gRPC server (or ISO 8583 port)
    weight: int = 1  # relative share of the pool's traffic
    protocol: str = GRPC  # "grpc" (authgw.v1.IssuerHost) or "iso8583" (config_iso8583.py)


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """An issuer pool: members of equal role, tried in priority order among pools."""

    name: str
    priority: int  # lower is tried first (1 = primary)
    attempt_timeout: timedelta  # per-attempt timeout for this pool's members
    members: tuple[MemberConfig, ...] = ()
    server_name: str = ""  # the name its hosts' certificates carry (TLS); "": the address's host
    allowed: tuple[str, ...] = ()  # host:port patterns (fnmatch) a member from etcd may have
    iso8583: LinkSettings = field(default_factory=LinkSettings)  # [pools.iso8583]: its ISO 8583 members

    @property
    def attempt_timeout_s(self) -> float:
        return self.attempt_timeout / _S


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """How one request's deadline is spent."""

    deadline: timedelta = 2 * _S  # gateway deadline; the client's is used when shorter
    attempt_timeout: timedelta = 400 * _MS  # default per-attempt timeout of a pool
    standin_reserve: timedelta = 150 * _MS  # kept back so stand-in can still answer in time
    retry_budget_ratio: float = 0.2  # retries in flight <= ratio x requests in flight
    retry_budget_min: int = 3  # ... but at least this many concurrent retries
    late_answer_window: timedelta = 5 * _S  # how long a timed-out attempt may still answer
    # without [standin]: how long the reversal after the gateway's own 91 is repeated (gateway.late_reversal)
    late_reversal_give_up: timedelta = 5 * 60 * _S

    @property
    def deadline_s(self) -> float:
        return self.deadline / _S

    @property
    def attempt_timeout_s(self) -> float:
        return self.attempt_timeout / _S

    @property
    def standin_reserve_s(self) -> float:
        return self.standin_reserve / _S

    @property
    def late_answer_window_s(self) -> float:
        return self.late_answer_window / _S

    @property
    def late_reversal_give_up_s(self) -> float:
        return self.late_reversal_give_up / _S


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Per-member ejection after consecutive failures (Envoy-style)."""

    consecutive_failures: int = 3
    base_ejection: timedelta = 5 * _S  # doubles on each new ejection
    max_ejection: timedelta = 60 * _S
    max_ejection_share: float = 0.5  # of a pool's members, by outlier detection alone

    @property
    def base_ejection_s(self) -> float:
        return self.base_ejection / _S

    @property
    def max_ejection_s(self) -> float:
        return self.max_ejection / _S


@dataclass(frozen=True, slots=True)
class DeclineStormConfig:
    """Pool-level failure detection over a sliding window of outcomes."""

    window: timedelta = 5 * _S
    min_requests: int = 10  # fewer outcomes than this in the window: no verdict
    consecutive_failures: int = 5  # errors or 91/96 in a row fail the pool at once
    threshold: float = 0.5  # share of bad outcomes that marks the pool failing
    baseline_05: float = 0.1  # normal share of 05 declines; only the excess counts
    cooloff: timedelta = 2 * _S  # a failing pool gets one trial request after this

    @property
    def window_s(self) -> float:
        return self.window / _S

    @property
    def cooloff_s(self) -> float:
        return self.cooloff / _S


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything `authgw serve` needs, and what its operator commands need to find."""

    source: str  # file it came from, for error messages
    listen: str = "127.0.0.1:50051"
    instance: str = "gw-1"  # unique per gateway process of a fleet
    max_amount_minor: int = 100_000_000  # validation ceiling for amount_minor
    drain_timeout: timedelta = 5 * _S  # SIGTERM: in-flight requests get this long
    pools: tuple[PoolConfig, ...] = ()
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    outlier: OutlierConfig = field(default_factory=OutlierConfig)
    decline_storm: DeclineStormConfig = field(default_factory=DeclineStormConfig)
    etcd_endpoints: tuple[str, ...] = ()  # empty: static pools only
    standin: StandInConfig | None = None  # [standin]: None = no stand-in (declines 91)
    reuse_check: bool = True
    """[standin] reuse_check: while stand-in decisions wait for their advice, the issuer path asks
    stand-in whether a request id was decided for other content (gateway/reuse_check.py)."""
    settlement: SettlementSettings = field(default_factory=SettlementSettings)
    telemetry: TelemetrySettings | None = None  # [telemetry]; None: the OTEL_* environment decides
    security: SecurityConfig = field(
        default_factory=lambda: SecurityConfig(server=TransportSecurity.plaintext())
    )  # [tls], [[acquirers]], [issuer_tls], [etcd]'s TLS (config_security.py)
    reflection: bool = False  # serve gRPC server reflection (off unless configured)
    max_message_bytes: int = 16 * 1024  # a larger request is RESOURCE_EXHAUSTED
    # transmitted_at further than this from the gateway's clock (either way) is INVALID_ARGUMENT
    transmitted_at_window: timedelta = timedelta(days=1)
    iso8583_listen: Iso8583ListenConfig | None = None  # [iso8583_listen]: None = no ISO 8583 listener
    # SO_REUSEPORT on the listening ports: set by `authgw serve --workers N` only, never from a file.
    # Off, a second gateway (a stale one, a typo in a unit file) on the same port fails to bind.
    share_port: bool = False
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)  # [admission]: overload refusals

    @property
    def drain_timeout_s(self) -> float:
        return self.drain_timeout / _S

    @property
    def transmitted_at_window_s(self) -> float:
        return self.transmitted_at_window / _S

    def for_instance(self, instance: str, local_journal: Path | None = None) -> GatewayConfig:
        """This config under another instance name (a worker process), with its own local journal."""
        standin = self.standin
        if standin is not None:
            path = local_journal or standin.sqlite_path.with_name(f"{instance}.sqlite3")
            standin = dataclasses.replace(standin, instance=instance, sqlite_path=path)
        return dataclasses.replace(self, instance=instance, standin=standin)


def _address(section: Section, name: str, default: str = "") -> str:
    value = section.string(name, default)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        section.fail(name, f"must be 'host:port', got {value!r}", "write e.g. 127.0.0.1:7001")
    return value


def _members(pool: Section) -> tuple[MemberConfig, ...]:
    members = []
    for m in pool.tables("members"):
        m.check_known({"name", "address", "weight", "protocol"})
        protocol = m.string("protocol", GRPC)
        if protocol not in (GRPC, ISO8583):
            m.fail("protocol", f"must be {GRPC!r} or {ISO8583!r}, got {protocol!r}", f"write {ISO8583!r}")
        members.append(
            MemberConfig(
                name=m.string("name", "", pattern=r"[A-Za-z0-9._-]{1,64}", fix="letters, digits, . _ -"),
                address=_address(m, "address"),
                weight=m.integer("weight", 1, minimum=1),
                protocol=protocol,
            )
        )
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        pool.fail("members", f"member names must be unique, got {names}", "rename the duplicates")
    return tuple(members)


def _pools(root: Section, routing: RoutingConfig) -> tuple[PoolConfig, ...]:
    pools = []
    for i, p in enumerate(root.tables("pools")):
        p.check_known({"name", "priority", "attempt_timeout", "members", "server_name", "allowed", "iso8583"})
        members = _members(p)
        server_name = p.string("server_name", "", pattern=r"[A-Za-z0-9.*-]{0,253}", fix="a DNS name")
        pools.append(
            PoolConfig(
                name=p.string("name", "", pattern=r"[A-Za-z0-9._-]{1,64}", fix="letters, digits, . _ -"),
                priority=p.integer("priority", i + 1, minimum=0),
                attempt_timeout=p.duration("attempt_timeout", routing.attempt_timeout, minimum=_MS),
                members=members,
                server_name=server_name,
                # by default only the addresses written here: etcd cannot add a host nobody listed
                allowed=p.strings("allowed", [m.address for m in members]),
                iso8583=issuer_link_settings(p.table("iso8583"), server_name),
            )
        )
        room = routing.deadline - routing.standin_reserve
        if pools[-1].attempt_timeout >= room:
            p.fail(
                "attempt_timeout", "leaves no room for the stand-in reserve", "make it < deadline - reserve"
            )
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        root.fail("pools", f"pool names must be unique, got {names}", "rename the duplicates")
    return tuple(sorted(pools, key=lambda p: p.priority))


def _routing(s: Section) -> RoutingConfig:
    s.check_known(
        {"deadline", "attempt_timeout", "standin_reserve", "retry_budget_ratio", "retry_budget_min"}
        | {"late_answer_window", "late_reversal_give_up"}
    )
    d = RoutingConfig()
    routing = RoutingConfig(
        deadline=s.duration("deadline", d.deadline, minimum=50 * _MS, maximum=60 * _S),
        attempt_timeout=s.duration("attempt_timeout", d.attempt_timeout, minimum=_MS),
        standin_reserve=s.duration("standin_reserve", d.standin_reserve),
        retry_budget_ratio=s.share("retry_budget_ratio", d.retry_budget_ratio),
        retry_budget_min=s.integer("retry_budget_min", d.retry_budget_min),
        late_answer_window=s.duration("late_answer_window", d.late_answer_window),
        late_reversal_give_up=s.duration("late_reversal_give_up", d.late_reversal_give_up, minimum=_S),
    )
    if routing.standin_reserve >= routing.deadline:
        s.fail("standin_reserve", "must be smaller than routing.deadline", "lower it or raise the deadline")
    return routing


def _outlier(s: Section) -> OutlierConfig:
    s.check_known({"consecutive_failures", "base_ejection", "max_ejection", "max_ejection_share"})
    d = OutlierConfig()
    outlier = OutlierConfig(
        consecutive_failures=s.integer("consecutive_failures", d.consecutive_failures, minimum=1),
        base_ejection=s.duration("base_ejection", d.base_ejection, minimum=_MS),
        max_ejection=s.duration("max_ejection", d.max_ejection, minimum=_MS),
        max_ejection_share=s.share("max_ejection_share", d.max_ejection_share),
    )
    if outlier.max_ejection < outlier.base_ejection:
        s.fail("max_ejection", "must be >= outlier.base_ejection", "raise it")
    return outlier


def _decline_storm(s: Section) -> DeclineStormConfig:
    s.check_known({"window", "min_requests", "consecutive_failures", "threshold", "baseline_05", "cooloff"})
    d = DeclineStormConfig()
    return DeclineStormConfig(
        window=s.duration("window", d.window, minimum=100 * _MS),
        min_requests=s.integer("min_requests", d.min_requests, minimum=1),
        consecutive_failures=s.integer("consecutive_failures", d.consecutive_failures, minimum=1),
        threshold=s.share("threshold", d.threshold),
        baseline_05=s.share("baseline_05", d.baseline_05),
        cooloff=s.duration("cooloff", d.cooloff, minimum=_MS),
    )


def _standin(s: Section, instance: str, env: Mapping[str, str]) -> StandInConfig | None:
    """`[standin]`: the stand-in file it names, with this gateway's overrides (None when absent)."""
    if not s.raw:
        return None
    s.check_known({"config", "redis_url", "sqlite_path", "reuse_check"})
    path = s.path("config")
    if path is None:
        s.fail("config", "missing", 'name the stand-in TOML file: config = "standin.toml"')
    scfg = load_standin_config(path, env)
    redis_url = s.string(
        "redis_url", "", pattern=r"((redis|rediss|unix)://.+)?", fix="write redis://host:port/db"
    )
    if redis_url:
        scfg = dataclasses.replace(scfg, redis=dataclasses.replace(scfg.redis, url=redis_url))
    # One local journal per gateway instance: beside the stand-in file's, named after the instance.
    sqlite = s.path("sqlite_path") or scfg.sqlite_path.with_name(f"{instance}.sqlite3")
    return dataclasses.replace(scfg, instance=instance, sqlite_path=sqlite)


def parse_config(
    data: Mapping[str, Any], source: str = "<config>", env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate a parsed TOML document into a GatewayConfig (`env`: secrets, default os.environ)."""
    root = Section(source, "", data)
    root.check_known(
        {
            "gateway",
            "routing",
            "outlier",
            "decline_storm",
            "etcd",
            "pools",
            "standin",
            "settlement",
            "telemetry",
            "tls",
            "acquirers",
            "issuer_tls",
            "iso8583_listen",
            "admission",
        }
    )
    gw = root.table("gateway")
    gw.check_known(
        {
            "listen",
            "instance",
            "max_amount_minor",
            "drain_timeout",
            "reflection",
            "max_message_bytes",
            "transmitted_at_window",
        }
    )
    instance = gw.string("instance", "gw-1", pattern=r"[A-Za-z0-9._-]{1,64}", fix="letters, digits, . _ -")
    routing = _routing(root.table("routing"))
    etcd = root.table("etcd")
    etcd.check_known({"endpoints", *TLS_KEYS})
    endpoints = etcd.strings("endpoints", ())
    pools = _pools(root, routing)
    if not pools and not endpoints:
        root.fail("pools", "no issuer pool", "define at least one [[pools]] or etcd.endpoints")
    security = security_config(root, etcd if endpoints else None)
    telemetry = root.table("telemetry")
    return GatewayConfig(
        source=source,
        listen=_address(gw, "listen", "127.0.0.1:50051"),
        instance=instance,
        max_amount_minor=gw.integer("max_amount_minor", 100_000_000, minimum=1),
        drain_timeout=gw.duration("drain_timeout", 5 * _S),
        pools=pools,
        routing=routing,
        outlier=_outlier(root.table("outlier")),
        decline_storm=_decline_storm(root.table("decline_storm")),
        etcd_endpoints=endpoints,
        standin=_standin(root.table("standin"), instance, os.environ if env is None else env),
        reuse_check=root.table("standin").boolean("reuse_check", True),
        settlement=load_settlement_settings(root.table("settlement")),
        telemetry=telemetry_from_section(telemetry) if root.has("telemetry") else None,
        security=security,
        reflection=gw.boolean("reflection", False),
        max_message_bytes=gw.integer("max_message_bytes", 16 * 1024, minimum=1024, maximum=4 * 1024 * 1024),
        transmitted_at_window=gw.duration(
            "transmitted_at_window", timedelta(days=1), minimum=_S, maximum=timedelta(days=30)
        ),
        iso8583_listen=iso8583_listen_config(root.table("iso8583_listen"), security.server),
        admission=admission_config(root.table("admission")),
    )


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate a gateway TOML file (ConfigError names the file, the key and the fix)."""
    root = read_toml(Path(path))
    return parse_config(root.raw, root.file, env)
