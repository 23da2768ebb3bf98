"""The gateway's settlement worker: `[standin]` and `[settlement]` of its config, advices over gRPC."""

from __future__ import annotations

import logging

from opentelemetry.metrics import Counter
from opentelemetry.trace import Tracer

from gateway.config import GatewayConfig
from gateway.router import Router
from gateway.settlement.sender import GrpcAdviceSender
from standin.settlement import (
    BacklogSource,
    IssuerHealth,
    Settlement,
)

__all__ = ["build_settlement"]

log = logging.getLogger("authgw.settlement")


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
    if cfg.standin is None or not cfg.settlement.enabled:
        return None
    sender = GrpcAdviceSender(router)

    def healthy() -> bool:
        return issuer_healthy() and router.has_healthy_pool() and sender.healthy()

    return Settlement.from_config(
        cfg.standin,
        cfg.settlement,
        sender=sender,
        issuer_healthy=healthy,
        instance=instance or cfg.instance,
        tracer=tracer,
        advice_counter=advice_counter,
        backlog=backlog,
    )
