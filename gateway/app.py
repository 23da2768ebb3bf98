"""The gateway process: router, servicer, gRPC server and their ordered lifecycle.

start(): build the router from config, bind the gRPC server (Authorization,
grpc.health.v1.Health, reflection), then the ISO 8583 listener when configured
(`[iso8583_listen]`), mark SERVING.
close(): mark NOT_SERVING, stop accepting on both ports, let in-flight requests
of both finish within drain_timeout, then close channels, then flush telemetry.
Safe to call twice.

Telemetry (gateway.telemetry) is built from the config unless given; the
gateway closes what it built, the caller what it gave.
"""

from __future__ import annotations

import asyncio
import enum
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from authgw.v1 import authorization_pb2 as pb
from gateway.admission import AdaptiveLimit, LoopLagSampler
from gateway.config import GatewayConfig
from gateway.edges.access import AccessControl
from gateway.edges.grpc_codec import add_authorization_service
from gateway.edges.grpc_service import AuthorizationService, DeclineFallback, Fallback
from gateway.edges.iso8583_acquirer import AcquirerHandler
from gateway.edges.iso8583_listener import Iso8583Listener
from gateway.edges.iso8583_metrics import Iso8583Counters
from gateway.edges.validation import EdgeLimits
from gateway.errors import ListenError
from gateway.journal_sampler import JournalSampler
from gateway.late_reversal import LateReversals
from gateway.membership import MembershipLink
from gateway.metrics import GatewayMetrics
from gateway.router import Router
from gateway.settlement.wiring import build_settlement
from gateway.standin_link import build_standin
from gateway.standin_mode import StandInMode
from gateway.telemetry import GatewayTelemetry
from gateway.transport import Transport
from health import Mode
from standin.policy_live import LivePolicy

__all__ = ["Gateway"]

log = logging.getLogger("authgw.gateway")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Authorization"].full_name


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Gateway:
    """One gateway process."""

    def __init__(
        self,
        cfg: GatewayConfig,
        fallback: Fallback | None = None,
        telemetry: GatewayTelemetry | None = None,
    ) -> None:
        self.cfg = cfg
        self._owns_telemetry = telemetry is None
        self.telemetry = telemetry or GatewayTelemetry.from_config(cfg)
        tracer = self.telemetry.tracer
        self.transport = Transport(cfg)  # reads the certificates: a bad file stops here, naming it
        self.standin = build_standin(cfg, self.telemetry.standin_tracer) if fallback is None else None
        self.router = Router(cfg, tracer=tracer, connect=self.transport.connect, iso=self.transport.iso)
        self.mode = Mode.AUTO
        self.membership = (
            MembershipLink(cfg, self.router, self._set_mode, tracer, policy=self._live_policy())
            if cfg.etcd_endpoints
            else None
        )
        self.standin_mode = StandInMode(self.router, on_change=self.telemetry.on_standin_mode)
        self.journal_sampler = (
            JournalSampler(self.standin.engine, interval_s=self.telemetry.journal_sample_interval_s)
            if self.standin and self.telemetry.metering
            else None
        )
        self.access = AccessControl(cfg.security)
        self.admission = AdaptiveLimit(cfg.admission) if cfg.admission.enabled else None
        self.lag_sampler = (
            LoopLagSampler(self.admission, cfg.admission.sample_interval_s) if self.admission else None
        )
        self.metrics = self._metrics() if self.telemetry.metering else None
        self.settlement = build_settlement(
            cfg,
            self.router,
            issuer_healthy=lambda: not self.standin_mode.active and self.mode is not Mode.FORCE_STANDIN,
            tracer=tracer,
            advice_counter=self.metrics.settlement_advices if self.metrics else None,
            backlog=self.standin.engine if self.standin else None,
        )
        # without stand-in, the gateway's own 91 after a possible issuer attempt is reversed (in memory)
        self.late_reversals = (
            LateReversals(
                self.router,
                attempt_deadline_s=cfg.routing.deadline_s,
                give_up_s=cfg.routing.late_reversal_give_up_s,
                counter=self.metrics.late_reversals if self.metrics else None,
            )
            if fallback is None and self.standin is None
            else None
        )
        tell_issuer = self.late_reversals.reverse if self.late_reversals else None
        self.service = AuthorizationService(
            cfg,
            self.router,
            fallback or self.standin or DeclineFallback(tell_issuer),
            mode=lambda: self.mode,
            standin_mode=self.standin_mode,
            spans=self.telemetry.server_spans,
            metrics=self.metrics,
            access=self.access,
            admission=self.admission,
        )
        self.iso8583 = self._iso8583_listener()
        self.health = HealthServicer()
        self.server = grpc.aio.server(
            options=[
                # grpcio turns SO_REUSEPORT on by default: a stale gateway would silently share the port
                ("grpc.so_reuseport", 1 if cfg.share_port else 0),
                ("grpc.max_concurrent_streams", 1000),
                ("grpc.max_receive_message_length", cfg.max_message_bytes),  # larger: RESOURCE_EXHAUSTED
            ],
            maximum_concurrent_rpcs=cfg.admission.hard_limit or None,  # refused in grpc, before Python
        )
        self.port = 0
        self._state = _State.NEW
        self._closed = asyncio.Event()

    def _iso8583_listener(self) -> Iso8583Listener | None:
        """The ISO 8583 acquirer listener of `[iso8583_listen]` (reads its certificates now), or None."""
        listen = self.cfg.iso8583_listen
        if listen is None:
            return None
        counters = Iso8583Counters()
        if self.telemetry.metering:
            counters.observe(self.telemetry.meter)
        handler = AcquirerHandler(
            self.service.authorizer,
            self.service.reversals,
            self.access,
            EdgeLimits(self.cfg.max_amount_minor, self.cfg.transmitted_at_window_s),
            counters,
            advise=self.service.advices.advise,  # the gRPC Advise path
            metrics=self.metrics,
            spans=self.telemetry.server_spans,
        )
        return Iso8583Listener(listen, handler, counters, share_port=self.cfg.share_port)

    def _metrics(self) -> GatewayMetrics:
        return GatewayMetrics(
            self.telemetry.meter,
            self.router,
            self.standin_mode,
            self.journal_sampler,
            fleet=self._fleet_size,
            certificates=self.transport.days_left,
            rejected_members=self.membership.filter.rejected if self.membership else None,
            denied=self.access.denied,
            mode=lambda: self.mode,
            configured_pools=[p.name for p in self.cfg.pools],
            admission=self.admission,
            policy=self._live_policy(),
        )

    async def start(self) -> None:
        if self._state is not _State.NEW:
            raise RuntimeError(f"gateway cannot start from state {self._state.value}")
        add_authorization_service(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if self.cfg.reflection:  # off unless configured: it lists the services to anyone who asks
            reflection.enable_server_reflection(
                (
                    SERVICE_NAME,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ),
                self.server,
            )
        try:
            self.port = self.transport.add_port(self.server, self.cfg.listen)
        except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
            raise ListenError(f"cannot listen on {self.cfg.listen}: {exc}") from exc
        if self.port == 0:
            raise ListenError(f"cannot listen on {self.cfg.listen} (in use, or not an address of this host)")
        await self.transport.start(on_issuer_certificate=self._issuer_certificate_changed)
        await self.access.start()
        if self.standin is not None:
            await self.standin.start()
        if self.journal_sampler is not None:
            self.journal_sampler.start()
        if self.membership is not None:
            await self.membership.start()  # returns after the first etcd read, or its timeout
        if self.lag_sampler is not None:
            self.lag_sampler.start()
        await self.server.start()
        if self.iso8583 is not None:
            await self.iso8583.start()
        if self.settlement is not None:
            await self.settlement.start()  # returns at once, even with Redis down
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        self._state = _State.RUNNING
        log.info(
            "gateway %s listening on %s (pools: %s)", self.cfg.instance, self.cfg.listen, self._pool_names()
        )

    async def _issuer_certificate_changed(self) -> None:
        await self.router.reconnect(self.transport.connect)

    def _fleet_size(self) -> int | None:
        """Gateways etcd lists now (read by the metrics thread from the latest snapshot)."""
        if self.membership is None:
            return None
        snapshot = self.membership.watcher.snapshot()
        return len(snapshot.gateways) if snapshot.etcd_connected else None

    def _live_policy(self) -> LivePolicy | None:
        return self.standin.engine.live_policy if self.standin is not None else None

    def _set_mode(self, mode: Mode) -> None:
        if mode != self.mode:
            log.warning("routing mode %s -> %s", self.mode.value, mode.value)
            self.mode = mode

    def _pool_names(self) -> str:
        return ", ".join(f"{p.name}[{len(p.members)}]" for p in self.router.pools) or "none"

    async def close(self) -> None:
        """Drain in-flight requests (up to drain_timeout), then release everything."""
        if self._state in (_State.CLOSING, _State.CLOSED):
            await self._closed.wait()
            return
        self._state = _State.CLOSING
        log.info("gateway %s draining (%d in flight)", self.cfg.instance, self.service.in_flight)
        await self.health.enter_graceful_shutdown()
        drains = [self.server.stop(grace=self.cfg.drain_timeout_s)]
        if self.iso8583 is not None:
            drains.append(self.iso8583.close(self.cfg.drain_timeout_s))
        await asyncio.gather(*drains)
        await self.standin_mode.close()
        if self.lag_sampler is not None:
            await self.lag_sampler.close()
        if self.journal_sampler is not None:
            await self.journal_sampler.close()
        if self.settlement is not None:
            await self.settlement.close()  # advices in flight finish and are recorded; leases released
        if self.standin is not None:
            await self.standin.close()
        if self.membership is not None:
            await self.membership.close()
        if self.late_reversals is not None:
            await self.late_reversals.close()  # in memory only: pending ones are lost (logged)
        await self.router.close()
        await self.access.close()
        await self.transport.close()
        if self._owns_telemetry:
            await self.telemetry.close()  # last: spans of the drained requests are exported too
        self._state = _State.CLOSED
        self._closed.set()
        log.info("gateway %s stopped", self.cfg.instance)

    async def wait_closed(self) -> None:
        await self._closed.wait()
