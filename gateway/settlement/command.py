"""`authgw settle --config gateway.toml`: one settlement worker, without a gateway around it.

It reads the same gateway config as `authgw serve`: `[standin]` for Redis, the journal
and the PAN key, `[settlement]` for pacing, `[[pools]]` (and `[etcd]`, followed live)
for the issuer hosts to advise. It runs beside the gateways or instead of a dead one:
partition leases keep it from sending a card's advices out of order with them.

Without a gateway it has no stand-in mode to consult; it pauses when `/authgw/mode` is
`force-standin`, when every pool is drained or gone, and when its own advices get no
answer (the worker's breaker and the sender's per-host cool-off).

The first SIGTERM/SIGINT stops reading, lets advices in flight finish and be recorded,
and releases the leases; a second one exits at once.

Telemetry as the gateway's (`[telemetry]`, else OTEL_*): advise spans linked to each
authorization's trace, and the authgw.settlement.advices counter.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from authgw.observability import LogFormat, configure_logging
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.graceful import stop_on_signals
from gateway.membership import MembershipLink
from gateway.metrics import settlement_counter
from gateway.router import Router
from gateway.settlement.sender import GrpcAdviceSender
from gateway.telemetry import GatewayTelemetry
from gateway.transport import Transport
from health import Mode
from standin.settlement import Settlement

__all__ = ["main", "run"]

log = logging.getLogger("authgw.settle")


class _Issuer:
    """The issuer hosts to advise: the config's pools, followed live in etcd when configured."""

    def __init__(self, cfg: GatewayConfig) -> None:
        self.transport = Transport(
            cfg, serving=False
        )  # [issuer_tls]: the same client certificate as the gateway's
        self.router = Router(cfg, connect=self.transport.connect, iso=self.transport.iso)
        self.mode = Mode.AUTO
        self._link = (
            MembershipLink(cfg, self.router, self._set_mode, register=False) if cfg.etcd_endpoints else None
        )

    def _set_mode(self, mode: Mode) -> None:
        if mode != self.mode:
            log.warning("routing mode %s -> %s", self.mode.value, mode.value)
            self.mode = mode

    async def start(self) -> None:
        await self.transport.start(on_issuer_certificate=self._reconnect)
        if self._link is not None:
            await self._link.start()

    async def _reconnect(self) -> None:
        await self.router.reconnect(self.transport.connect)

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
        await self.router.close()
        await self.transport.close()


async def run(cfg: GatewayConfig, instance: str, telemetry: GatewayTelemetry | None = None) -> int:
    if cfg.standin is None:
        print(f"authgw settle: {cfg.source} has no [standin] section: nothing to settle", file=sys.stderr)
        return 2
    issuer = _Issuer(cfg)  # inside the loop: gRPC channels bind to the running loop
    sender = GrpcAdviceSender(issuer.router)

    def healthy() -> bool:
        return issuer.mode is not Mode.FORCE_STANDIN and issuer.router.has_healthy_pool() and sender.healthy()

    telemetry = telemetry or GatewayTelemetry.off()
    worker = Settlement.from_config(
        cfg.standin,
        cfg.settlement,
        sender=sender,
        issuer_healthy=healthy,
        instance=instance,
        tracer=telemetry.standin_tracer,  # advise spans, linked to each authorization's trace
        advice_counter=settlement_counter(telemetry.meter) if telemetry.metering else None,
    )
    stop = stop_on_signals("stopping settlement")
    try:
        await issuer.start()
        await worker.start()
        log.info("settlement worker %s running", worker.worker_id)
        await stop.wait()
    finally:
        await worker.close()
        await issuer.close()
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `authgw settle`; argv[0] is the command name."""
    parser = argparse.ArgumentParser(prog="authgw settle", description="run a settlement worker alone")
    parser.add_argument("--config", required=True, help="gateway TOML file ([standin], [settlement], pools)")
    parser.add_argument(
        "--instance",
        default="",
        help="name its settled decisions are counted under (default: <gateway instance>-settle)",
    )
    parser.add_argument("--log-level", default=os.environ.get("AUTHGW_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format", choices=[f.value for f in LogFormat], default=LogFormat.JSON.value, help="log lines"
    )
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    args = parser.parse_args(argv[1:])
    configure_logging(LogFormat(args.log_format), args.log_level)
    try:
        cfg = load_config(args.config)
        telemetry = GatewayTelemetry.from_config(cfg)  # [telemetry], else OTEL_*
    except ConfigError as exc:
        print(f"authgw settle: invalid config: {exc}", file=sys.stderr)
        return 2
    instance = args.instance or f"{cfg.instance}-settle"
    try:
        if not args.no_uvloop:
            import uvloop  # noqa: PLC0415 (optional speed-up, imported only when used)

            return int(uvloop.run(run(cfg, instance, telemetry)))
        return asyncio.run(run(cfg, instance, telemetry))
    finally:
        telemetry.telemetry.shutdown()  # after the loop: the last spans and counts are flushed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
