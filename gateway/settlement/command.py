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
from gateway.membership import pool_specs, seed_membership
from gateway.metrics import settlement_counter
from gateway.router import Router
from gateway.settlement.sender import GrpcAdviceSender
from gateway.settlement.wiring import load_settlement_config
from gateway.telemetry import GatewayTelemetry
from health import EtcdClient, Membership, MembershipWatcher, Mode, parse_endpoints
from standin.settlement import Settlement

__all__ = ["main", "run"]

log = logging.getLogger("authgw.settle")


class _Issuer:
    """Membership from etcd (or the config's static pools) into a router, and the forced mode."""

    def __init__(self, cfg: GatewayConfig) -> None:
        self.router = Router(cfg)
        self.mode = Mode.AUTO
        self._client: EtcdClient | None = None
        self._watcher: MembershipWatcher | None = None
        if cfg.etcd_endpoints:
            self._client = EtcdClient(parse_endpoints(",".join(cfg.etcd_endpoints)))
            self._watcher = MembershipWatcher(
                self._client, seed=seed_membership(cfg), on_change=self._changed
            )

    def _changed(self, membership: Membership) -> None:
        self.router.apply(pool_specs(membership))
        if membership.mode != self.mode:
            log.warning("routing mode %s -> %s", self.mode.value, membership.mode.value)
            self.mode = membership.mode

    async def start(self) -> None:
        if self._watcher is not None:
            await self._watcher.start()
            self._changed(self._watcher.snapshot())

    async def close(self) -> None:
        if self._watcher is not None:
            await self._watcher.close()
        if self._client is not None:
            await self._client.close()
        await self.router.close()


async def run(cfg: GatewayConfig, instance: str, telemetry: GatewayTelemetry | None = None) -> int:
    loaded = load_settlement_config(cfg)
    if loaded is None:
        print(f"authgw settle: {cfg.source} has no [standin] section: nothing to settle", file=sys.stderr)
        return 2
    scfg, settings = loaded
    issuer = _Issuer(cfg)  # inside the loop: gRPC channels bind to the running loop
    sender = GrpcAdviceSender(issuer.router)

    def healthy() -> bool:
        return issuer.mode is not Mode.FORCE_STANDIN and issuer.router.has_healthy_pool() and sender.healthy()

    telemetry = telemetry or GatewayTelemetry.off()
    worker = Settlement.from_config(
        scfg,
        settings,
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
        load_settlement_config(cfg)  # fail here, before the loop, on a bad [standin] or [settlement]
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
