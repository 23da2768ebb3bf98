"""The gateway's settlement worker: `[standin]` and `[settlement]` of its config, advices over gRPC."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from opentelemetry.metrics import Counter
from opentelemetry.trace import Tracer

from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.router import Router
from gateway.settlement.sender import GrpcAdviceSender
from standin import ConfigError as StandInConfigError
from standin import StandInConfig
from standin import load_config as load_standin_config
from standin.settlement import (
    BacklogSource,
    IssuerHealth,
    Settlement,
    SettlementSettings,
    load_settlement_settings,
)

__all__ = ["build_settlement", "load_settlement_config"]

log = logging.getLogger("authgw.settlement")


def load_settlement_config(cfg: GatewayConfig) -> tuple[StandInConfig, SettlementSettings] | None:
    """The stand-in config (`[standin]`, as the gateway's engine reads it) and `[settlement]`.

    None when the gateway has no `[standin]` section (nothing is ever journaled).
    """
    section = cfg.raw.get("standin")
    if section is None:
        return None
    if not isinstance(section, dict) or not isinstance(section.get("config"), str):
        raise ConfigError(cfg.source, "standin.config", "must name the stand-in TOML file")
    base = Path(cfg.source).parent
    table = cfg.raw.get("settlement", {})
    if not isinstance(table, dict):
        raise ConfigError(cfg.source, "settlement", "must be a table")
    try:
        scfg = load_standin_config((base / section["config"]).resolve())
        settings = load_settlement_settings(cfg.source, table)
    except StandInConfigError as exc:
        raise ConfigError(cfg.source, exc.key, f"{exc.problem}; fix: {exc.fix}") from exc
    redis_url = section.get("redis_url")
    if redis_url is not None:
        scfg = dataclasses.replace(scfg, redis=dataclasses.replace(scfg.redis, url=str(redis_url)))
    return dataclasses.replace(scfg, instance=cfg.instance), settings


def build_settlement(
    cfg: GatewayConfig,
    router: Router,
    *,
    issuer_healthy: IssuerHealth,
    tracer: Tracer | None = None,
    advice_counter: Counter | None = None,
    backlog: BacklogSource | None = None,
    instance: str | None = None,
) -> Settlement | None:
    """The gateway's settlement worker, or None without `[standin]` or with `settlement.enabled = false`.

    Args:
        issuer_healthy: the gateway's own view (e.g. not in stand-in mode); the router's
            `has_healthy_pool()` is added to it here.
        backlog: the gateway's stand-in engine, whose local backlog the worker reports.
        instance: the name settled decisions are counted under (default: the gateway's).
    """
    loaded = load_settlement_config(cfg)
    if loaded is None:
        return None
    scfg, settings = loaded
    if not settings.enabled:
        return None
    sender = GrpcAdviceSender(router)

    def healthy() -> bool:
        return issuer_healthy() and router.has_healthy_pool() and sender.healthy()

    return Settlement.from_config(
        scfg,
        settings,
        sender=sender,
        issuer_healthy=healthy,
        instance=instance or cfg.instance,
        tracer=tracer,
        advice_counter=advice_counter,
        backlog=backlog,
    )
