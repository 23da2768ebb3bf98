"""Gateway configuration: a TOML file loaded into frozen dataclasses, validated at load.

Times are milliseconds in the file (`*_ms` keys) and seconds in the dataclasses
(`*_s` fields). Every error names the file, the key and what to do about it.
See config/gateway.example.toml for a documented example.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

__all__ = [
    "DeclineStormConfig",
    "GatewayConfig",
    "MemberConfig",
    "OutlierConfig",
    "PoolConfig",
    "RoutingConfig",
    "load_config",
    "parse_config",
]


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """A static pool member (a seed when etcd is configured)."""

    name: str
    address: str  # host:port of the issuer host's gRPC server
    weight: int = 1  # relative share of the pool's traffic


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """An issuer pool: members of equal role, tried in priority order among pools."""

    name: str
    priority: int  # lower is tried first (1 = primary)
    attempt_timeout_s: float  # per-attempt timeout for this pool's members
    members: tuple[MemberConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """How one request's deadline is spent."""

    deadline_s: float = 2.0  # gateway deadline; the client's is used when shorter
    attempt_timeout_s: float = 0.4  # default per-attempt timeout of a pool
    standin_reserve_s: float = 0.15  # kept back so stand-in can still answer in time
    retry_budget_ratio: float = 0.2  # retries in flight <= ratio x requests in flight
    retry_budget_min: int = 3  # ... but at least this many concurrent retries
    late_answer_window_s: float = 5.0  # how long a timed-out attempt may still answer


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Per-member ejection after consecutive failures (Envoy-style)."""

    consecutive_failures: int = 3
    base_ejection_s: float = 5.0  # doubles on each new ejection
    max_ejection_s: float = 60.0
    max_ejection_share: float = 0.5  # of a pool's members, by outlier detection alone


@dataclass(frozen=True, slots=True)
class DeclineStormConfig:
    """Pool-level failure detection over a sliding window of outcomes."""

    window_s: float = 5.0
    min_requests: int = 10  # fewer outcomes than this in the window: no verdict
    consecutive_failures: int = 5  # errors or 91/96 in a row fail the pool at once
    threshold: float = 0.5  # share of bad outcomes that marks the pool failing
    baseline_05: float = 0.1  # normal share of 05 declines; only the excess counts
    cooloff_s: float = 2.0  # a failing pool gets one trial request after this


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything `authgw serve` needs."""

    source: str  # file it came from, for error messages
    listen: str = "127.0.0.1:50051"
    instance: str = "gw-1"  # unique per gateway process of a fleet
    max_amount_minor: int = 100_000_000  # validation ceiling for amount_minor
    drain_timeout_s: float = 5.0  # SIGTERM: in-flight requests get this long
    pools: tuple[PoolConfig, ...] = ()
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    outlier: OutlierConfig = field(default_factory=OutlierConfig)
    decline_storm: DeclineStormConfig = field(default_factory=DeclineStormConfig)
    etcd_endpoints: tuple[str, ...] = ()  # empty: static pools only
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)  # for other packages' sections


class _Section:
    """Typed access to one TOML table, raising ConfigError that names the key."""

    def __init__(self, source: str, prefix: str, table: Mapping[str, Any]) -> None:
        self.source, self.prefix, self.table = source, prefix, table

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), problem)

    def string(self, name: str, default: str) -> str:
        value = self.table.get(name, default)
        if not isinstance(value, str) or not value:
            raise self.fail(name, f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self.fail(name, f"must be >= {minimum}, got {value}")
        return value

    def millis(self, name: str, default_s: float, minimum_ms: int = 1) -> float:
        return self.integer(name, round(default_s * 1000), minimum_ms) / 1000.0

    def share(self, name: str, default: float) -> float:
        value = self.table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise self.fail(name, f"must be a number between 0 and 1, got {value!r}")
        return float(value)

    def sub(self, name: str) -> _Section:
        value = self.table.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, "must be a table")
        return _Section(self.source, self.key(name), value)

    def check_known(self, known: set[str]) -> None:
        for name in self.table:
            if name not in known:
                raise self.fail(name, f"unknown key (known: {', '.join(sorted(known))})")


def _address(section: _Section, name: str, value: Any) -> str:
    if not isinstance(value, str) or ":" not in value or not value.rsplit(":", 1)[1].isdigit():
        raise section.fail(name, f"must be 'host:port', got {value!r}")
    return value


def _members(section: _Section, raw: Any) -> tuple[MemberConfig, ...]:
    if not isinstance(raw, list):
        raise section.fail("members", "must be a list of {name, address, weight} tables")
    members = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise section.fail(f"members[{i}]", "must be a table with name and address")
        m = _Section(section.source, section.key(f"members[{i}]"), item)
        m.check_known({"name", "address", "weight"})
        members.append(
            MemberConfig(
                name=m.string("name", ""),
                address=_address(m, "address", item.get("address")),
                weight=m.integer("weight", 1, minimum=1),
            )
        )
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise section.fail("members", f"member names must be unique, got {names}")
    return tuple(members)


def _pools(source: str, raw: Any, default_timeout_s: float) -> tuple[PoolConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(source, "pools", "must be an array of tables ([[pools]])")
    pools = []
    for i, item in enumerate(raw):
        p = _Section(source, f"pools[{i}]", item if isinstance(item, dict) else {})
        p.check_known({"name", "priority", "attempt_timeout_ms", "members"})
        pools.append(
            PoolConfig(
                name=p.string("name", ""),
                priority=p.integer("priority", i + 1, minimum=0),
                attempt_timeout_s=p.millis("attempt_timeout_ms", default_timeout_s),
                members=_members(p, item.get("members", [])),
            )
        )
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise ConfigError(source, "pools", f"pool names must be unique, got {names}")
    return tuple(sorted(pools, key=lambda p: p.priority))


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> GatewayConfig:
    """Validate a parsed TOML document into a GatewayConfig."""
    top = _Section(source, "", data)
    known_sections = {"gateway", "routing", "outlier", "decline_storm", "etcd", "pools"}
    extra = {"standin", "telemetry", "settlement", "redis"}  # read by their own packages
    top.check_known(known_sections | extra)

    gw = top.sub("gateway")
    gw.check_known({"listen", "instance", "max_amount_minor", "drain_timeout_ms"})
    rt = top.sub("routing")
    rt.check_known(
        {"deadline_ms", "attempt_timeout_ms", "standin_reserve_ms", "retry_budget_ratio"}
        | {"retry_budget_min", "late_answer_window_ms"}
    )
    routing = RoutingConfig(
        deadline_s=rt.millis("deadline_ms", 2.0, minimum_ms=50),
        attempt_timeout_s=rt.millis("attempt_timeout_ms", 0.4),
        standin_reserve_s=rt.millis("standin_reserve_ms", 0.15, minimum_ms=0),
        retry_budget_ratio=rt.share("retry_budget_ratio", 0.2),
        retry_budget_min=rt.integer("retry_budget_min", 3),
        late_answer_window_s=rt.millis("late_answer_window_ms", 5.0, minimum_ms=0),
    )
    if routing.standin_reserve_s >= routing.deadline_s:
        raise ConfigError(source, "routing.standin_reserve_ms", "must be smaller than routing.deadline_ms")

    od = top.sub("outlier")
    od.check_known({"consecutive_failures", "base_ejection_ms", "max_ejection_ms", "max_ejection_share"})
    outlier = OutlierConfig(
        consecutive_failures=od.integer("consecutive_failures", 3, minimum=1),
        base_ejection_s=od.millis("base_ejection_ms", 5.0),
        max_ejection_s=od.millis("max_ejection_ms", 60.0),
        max_ejection_share=od.share("max_ejection_share", 0.5),
    )
    if outlier.max_ejection_s < outlier.base_ejection_s:
        raise ConfigError(source, "outlier.max_ejection_ms", "must be >= outlier.base_ejection_ms")

    ds = top.sub("decline_storm")
    ds.check_known(
        {"window_ms", "min_requests", "consecutive_failures", "threshold", "baseline_05", "cooloff_ms"}
    )
    storm = DeclineStormConfig(
        window_s=ds.millis("window_ms", 5.0, minimum_ms=100),
        min_requests=ds.integer("min_requests", 10, minimum=1),
        consecutive_failures=ds.integer("consecutive_failures", 5, minimum=1),
        threshold=ds.share("threshold", 0.5),
        baseline_05=ds.share("baseline_05", 0.1),
        cooloff_s=ds.millis("cooloff_ms", 2.0),
    )

    et = top.sub("etcd")
    et.check_known({"endpoints"})
    endpoints = et.table.get("endpoints", [])
    if not isinstance(endpoints, list) or not all(isinstance(e, str) and e for e in endpoints):
        raise et.fail("endpoints", "must be a list of URLs such as ['http://127.0.0.1:2379']")

    pools = _pools(source, data.get("pools", []), routing.attempt_timeout_s)
    if not pools and not endpoints:
        raise ConfigError(source, "pools", "define at least one [[pools]] or etcd.endpoints")
    for pool in pools:
        if pool.attempt_timeout_s >= routing.deadline_s - routing.standin_reserve_s:
            raise ConfigError(
                source,
                f"pools.{pool.name}.attempt_timeout_ms",
                "must leave room in routing.deadline_ms after routing.standin_reserve_ms",
            )

    return GatewayConfig(
        source=source,
        listen=_address(gw, "listen", gw.table.get("listen", "127.0.0.1:50051")),
        instance=gw.string("instance", "gw-1"),
        max_amount_minor=gw.integer("max_amount_minor", 100_000_000, minimum=1),
        drain_timeout_s=gw.millis("drain_timeout_ms", 5.0, minimum_ms=0),
        pools=pools,
        routing=routing,
        outlier=outlier,
        decline_storm=storm,
        etcd_endpoints=tuple(endpoints),
        raw=data,
    )


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a TOML config file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(str(p), "-", "file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "-", f"not valid TOML: {exc}") from exc
    return parse_config(data, str(p))
