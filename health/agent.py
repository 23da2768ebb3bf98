"""The health agent beside each issuer host: `authgw health-agent`.

It probes its host every probe interval and holds the host's member key in
etcd on a lease while the host is healthy. `fall` failed probes revoke the
lease at once (every gateway drops the member in the same instant); `rise`
good ones register it again on a new lease. If the agent dies, the lease
expires within its TTL and the member leaves routing all the same. etcd being
down changes nothing to the probing: the lease loop re-creates what etcd lost
when it answers again.

Both of its links are mutual TLS unless told otherwise on the command line
(health.tls_flags): to etcd with `--etcd-cert/-key/-ca` (the certificate's CN,
`agent-<pool>`, is the etcd user, allowed to write only its pool's member keys:
health.etcd_auth), and to the issuer host it probes with `--probe-cert/-key/-ca`
and `--probe-server-name` (the name the host's certificate carries). Rotated
certificate files are picked up without a restart. `--etcd-insecure` and
`--probe-insecure` choose plaintext, logged as a warning at start and every minute.

Telemetry (OTEL_* environment, see authgw.observability): a span per host
transition (`authgw.health.host_up` / `authgw.health.host_down`, the latter
around the lease revoke) and a span with an event whenever the agent sees its
lease change (`authgw.health.lease`, event lease.registered or lease.released).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass

from opentelemetry import trace

from authgw.observability import (
    LogFormat,
    Telemetry,
    TelemetrySettingError,
    TelemetrySettings,
    configure_logging,
)
from authgw.security import PlaintextWarning, SecurityError
from health.echo_probe import EchoProbe
from health.endpoints import DEFAULT_ETCD, parse_endpoints
from health.errors import HealthError, InvalidName
from health.etcd import EtcdClient
from health.keys import DEFAULT_ROOT, KeyLayout, check_name
from health.lease import LeasedKey
from health.membership import MemberInfo
from health.probe import HealthProbe, RiseFall, Transition
from health.tls_flags import add_tls_flags, server_name, transport_security

__all__ = ["AgentConfig", "HealthAgent", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    """What the agent registers and how it judges its host."""

    pool: str
    """Pool the host belongs to."""
    member: str
    """Name of the host inside its pool (unique in the pool)."""
    address: str
    """host:port the gateways send authorizations to, and that the agent probes."""
    zone: str = ""
    """Data centre or availability zone of the host."""
    weight: int = 1
    """Relative share of the pool's traffic."""
    version: str = ""
    """Software version label of the host, shown to gateways and operators."""
    service: str = ""
    """Service name asked in Health/Check ("" = the whole server)."""
    ttl_s: int = 3
    """Lease TTL: how long the member outlives a dead agent."""
    probe_interval_s: float = 0.5
    """Time between the starts of two probes."""
    probe_timeout_s: float = 0.3
    """Deadline of one probe."""
    fall: int = 2
    """Consecutive failed probes that take the member out."""
    rise: int = 2
    """Consecutive good probes that put it back."""
    key_root: str = DEFAULT_ROOT
    """etcd key root (tests use their own)."""
    protocol: str = "grpc"
    """What the host speaks (registered for the gateways, and how it is probed): grpc or iso8583."""

    def __post_init__(self) -> None:
        check_name("pool", self.pool)
        check_name("member", self.member)
        MemberInfo(address=self.address, weight=self.weight, protocol=self.protocol)  # validates them
        for name in ("ttl_s", "probe_interval_s", "probe_timeout_s", "fall", "rise"):
            if getattr(self, name) <= 0:
                raise InvalidName(f"{name} must be > 0, got {getattr(self, name)}")


class HealthAgent:
    """Probes one host and holds its member key while it is healthy.

    Args:
        client: etcd client (owned by the caller).
        config: what to register and the probe settings.
        probe: the host probe (closed by the agent); by default Health/Check on
            config.address in plaintext: give a HealthProbe with TLS settings otherwise.
        tracer: where lease changes go as spans (default: nowhere).
    """

    def __init__(
        self,
        client: EtcdClient,
        config: AgentConfig,
        *,
        probe: HealthProbe | EchoProbe | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._config = config
        self._tracer = tracer
        self._span_attrs: dict[str, str] = {"authgw.pool": config.pool, "authgw.member": config.member}
        self._seen_held = False
        self._probe = probe or HealthProbe(
            config.address, timeout_s=config.probe_timeout_s, service=config.service
        )
        self._health = RiseFall(rise=config.rise, fall=config.fall)
        self._lease = LeasedKey(
            client,
            KeyLayout(config.key_root).member(config.pool, config.member),
            self._member_value,
            ttl_s=config.ttl_s,
        )

    @property
    def host_up(self) -> bool:
        """The host passed its last `rise` probes and has not failed `fall` since."""
        return self._health.up

    @property
    def registered(self) -> bool:
        """The member key is in etcd as far as the agent knows."""
        return self._lease.held

    @property
    def etcd_connected(self) -> bool:
        """The agent's last etcd call succeeded."""
        return self._lease.etcd_connected

    async def run(self, stop: asyncio.Event) -> None:
        """Probe until `stop` is set, then revoke the lease and return."""
        loop = asyncio.get_running_loop()
        cfg = self._config
        log.info(
            "agent for %s/%s at %s: probe every %ss (timeout %ss, fall %d, rise %d), lease ttl %ss",
            cfg.pool,
            cfg.member,
            cfg.address,
            cfg.probe_interval_s,
            cfg.probe_timeout_s,
            cfg.fall,
            cfg.rise,
            cfg.ttl_s,
        )
        async with self._lease:
            try:
                await self._probe.follow_certificates()
                while not stop.is_set():
                    started = loop.time()
                    await self._probe_once()
                    await _wait(stop, cfg.probe_interval_s - (loop.time() - started))
            finally:
                await self._probe.close()

    async def _probe_once(self) -> None:
        result = await self._probe.check()
        match self._health.observe(result.ok):
            case Transition.UP:
                log.info("host %s healthy after %d good probes", self._config.address, self._config.rise)
                with self._span("authgw.health.host_up"):
                    self._lease.hold()
            case Transition.DOWN:
                reason = f"{self._config.fall} failed probes, last: {result.detail}"
                log.warning("host %s unhealthy: %s", self._config.address, reason)
                with self._span("authgw.health.host_down", reason):
                    await self._lease.release(reason)
            case None:
                pass
        self._note_lease()

    def _span(self, name: str, reason: str = "") -> contextlib.AbstractContextManager[object]:
        if self._tracer is None:
            return contextlib.nullcontext()
        attrs: dict[str, str] = {**self._span_attrs, "authgw.reason": reason} if reason else self._span_attrs
        return self._tracer.start_as_current_span(name, attributes=attrs)

    def _note_lease(self) -> None:
        """One span per change of the lease as the agent sees it (the lease loop registers on its own)."""
        held = self._lease.held
        if held == self._seen_held:
            return
        self._seen_held = held
        if self._tracer is None:
            return
        lease = self._lease.lease_id
        attrs: dict[str, str | bool] = {
            **self._span_attrs,
            "authgw.lease.key": self._lease.key,
            "authgw.lease.held": held,
            "authgw.lease.id": f"{lease:x}" if lease is not None else "",
        }
        with self._tracer.start_as_current_span("authgw.health.lease", attributes=attrs) as span:
            span.add_event("lease.registered" if held else "lease.released", attrs)

    def _member_value(self) -> bytes:
        cfg = self._config
        return MemberInfo(
            address=cfg.address, zone=cfg.zone, weight=cfg.weight, version=cfg.version, protocol=cfg.protocol
        ).to_json()


async def _wait(stop: asyncio.Event, delay_s: float) -> None:
    if delay_s <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            await stop.wait()


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Hold a pool member's etcd lease while its host is healthy."
    )
    parser.add_argument(
        "--etcd",
        default=os.environ.get("AUTHGW_ETCD", DEFAULT_ETCD),
        help="etcd client URLs, comma-separated (default: $AUTHGW_ETCD or %(default)s)",
    )
    parser.add_argument("--pool", required=True, help="pool of the host")
    parser.add_argument("--member", required=True, help="name of the host in its pool")
    parser.add_argument(
        "--address", required=True, help="host:port of the issuer host (probed and registered)"
    )
    parser.add_argument("--zone", default="", help="zone or data centre of the host")
    parser.add_argument("--weight", type=int, default=1, help="relative traffic share (default: 1)")
    parser.add_argument("--member-version", default="", help="software version label of the host")
    parser.add_argument("--service", default="", help="service name for Health/Check (default: whole server)")
    parser.add_argument("--ttl", type=int, default=3, help="lease TTL in seconds (default: 3)")
    parser.add_argument(
        "--probe-interval", type=float, default=0.5, help="seconds between probes (default: 0.5)"
    )
    parser.add_argument(
        "--probe-timeout", type=float, default=0.3, help="deadline of one probe (default: 0.3)"
    )
    parser.add_argument(
        "--fall", type=int, default=2, help="failed probes that take the member out (default: 2)"
    )
    parser.add_argument("--rise", type=int, default=2, help="good probes that put it back (default: 2)")
    parser.add_argument(
        "--etcd-timeout", type=float, default=1.0, help="deadline of one etcd call (default: 1.0)"
    )
    parser.add_argument("--key-root", default=DEFAULT_ROOT, help="etcd key root (default: %(default)s)")
    parser.add_argument(
        "--protocol",
        choices=["grpc", "iso8583"],
        default="grpc",
        help="what the host speaks: grpc (probed with Health/Check) or iso8583 (0800 echo)",
    )
    add_tls_flags(parser, "etcd", "etcd", env="AUTHGW_ETCD")
    add_tls_flags(parser, "probe", "the issuer host")
    parser.add_argument("--log-level", default=os.environ.get("AUTHGW_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format", choices=[f.value for f in LogFormat], default=LogFormat.JSON.value, help="log lines"
    )
    return parser


def main(argv: list[str]) -> int:
    """`authgw health-agent ...`: run until SIGTERM/SIGINT, then revoke the lease and exit 0."""
    parser = _parser(f"authgw {argv[0]}")
    args = parser.parse_args(argv[1:])
    try:
        config, client, probe = _build(args)
    except (HealthError, SecurityError) as exc:
        parser.error(str(exc))
    configure_logging(LogFormat(args.log_format), args.log_level)
    try:
        resource = {"authgw.pool": args.pool, "authgw.member": args.member}
        settings = TelemetrySettings.from_env("authgw-health-agent", resource_attributes=resource)
    except TelemetrySettingError as exc:
        parser.error(str(exc))
    telemetry = Telemetry(settings)
    tracer = telemetry.tracer("authgw.health") if telemetry.tracing else None
    try:
        return asyncio.run(_serve(client, config, probe, tracer))
    except asyncio.CancelledError:
        log.warning("second signal: exited without waiting for the lease revoke")
        return 1
    finally:
        telemetry.shutdown()


def _build(args: argparse.Namespace) -> tuple[AgentConfig, EtcdClient, HealthProbe | EchoProbe]:
    """The agent's settings and its two links, checked (certificate files read) before the loop runs."""
    endpoints = parse_endpoints(args.etcd)
    etcd_security = transport_security(args, "etcd")
    probe_security = transport_security(args, "probe")
    config = AgentConfig(
        pool=args.pool,
        member=args.member,
        address=args.address,
        zone=args.zone,
        weight=args.weight,
        version=args.member_version,
        service=args.service,
        ttl_s=args.ttl,
        probe_interval_s=args.probe_interval,
        probe_timeout_s=args.probe_timeout,
        fall=args.fall,
        rise=args.rise,
        key_root=args.key_root,
        protocol=args.protocol,
    )
    client = EtcdClient(
        endpoints,
        request_timeout_s=args.etcd_timeout,
        security=etcd_security,
        server_name=server_name(args, "etcd"),
    )
    probe: HealthProbe | EchoProbe
    if config.protocol == "iso8583":  # an 0800 echo, as the gateways' links send
        probe = EchoProbe(
            config.address,
            timeout_s=config.probe_timeout_s,
            security=probe_security,
            server_name=server_name(args, "probe"),
        )
    else:
        probe = HealthProbe(
            config.address,
            timeout_s=config.probe_timeout_s,
            service=config.service,
            security=probe_security,
            server_name=server_name(args, "probe"),
        )
    return config, client, probe


async def _serve(
    client: EtcdClient,
    config: AgentConfig,
    probe: HealthProbe | EchoProbe,
    tracer: trace.Tracer | None = None,
) -> int:
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    assert main_task is not None  # asyncio.run always runs us in a task

    def on_signal() -> None:
        if stop.is_set():
            main_task.cancel()  # second signal: do not wait for etcd any longer
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    async with (
        client,
        PlaintextWarning(client.security, "health agent -> etcd"),
        PlaintextWarning(probe.security, f"health agent -> issuer host {config.address}"),
    ):
        await client.follow_certificates()
        await HealthAgent(client, config, probe=probe, tracer=tracer).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(["health-agent", *sys.argv[1:]]))
