"""Issuer host simulator: `python -m chaos issuer-sim --listen HOST:PORT --pool NAME --member NAME`.

One process is one issuer host. It serves, on one port:

- `authgw.v1.IssuerHost` (Authorize, Advise, Reverse), deciding like an issuer
  from the card's deterministic profile (`chaos.card_profiles.card_profile`):
  blocked 05, lost 41, stolen 43, amount over the available balance 51, else
  00 with a 6-character approval code and the amount held. A request is
  (acquirer_id, request_id) and its content: a repeat gets the same answer
  and is held once, other content is refused ALREADY_EXISTS, an original
  whose reversal arrived first is declined 05. An advice (once per
  decision_id) is authoritative for its request: the book ends with the
  latest advice's outcome, replacing the issuer's own hold. A reversal (once
  per reversal_id) caps the request's book, or is held until it arrives. The
  rules, and the money invariant they serve, are in `chaos.book`.
- ISO 8583, with `--iso8583-listen HOST:PORT`: the same host (books, accounts, faults)
  on a second port, 0100/0200, advices, reversals and 0800 echo (`chaos.sim_iso8583`).
- `grpc.health.v1.Health`: SERVING for "" and "authgw.v1.IssuerHost".
- `authgw.v1.IssuerSimControl`: SetFaults (replaces every fault at once),
  Report (this host's counters, current faults, the ledger's advices) and
  Books (every request's book, streamed in pages of one snapshot of the
  ledger, and the postings no book explains).

Accounts live in a `chaos.ledger_protocol.Ledger`: private to the process by
default (`chaos.memory_ledger`), or issuer-wide with `--ledger
redis://HOST:PORT/DB` (`chaos.redis_ledger`), shared by every host given the
same URL. A ledger that does not answer in time fails the call with
UNAVAILABLE.

Faults (flags at start, SetFaults at run time):

- latency_ms: added before answering Authorize, Advise and Reverse.
- error_rate: share of Authorize/Advise/Reverse calls failed with UNAVAILABLE.
- decline_code: every Authorize answered DECLINED with that code, e.g. "96"
  (a decline storm); such answers are not recorded, so a retry of the same
  request_id elsewhere gets the real decision.
- hang: Authorize, Advise, Reverse and Health/Check accept calls and answer
  nothing until hang is cleared (IssuerSimControl still answers).
- advise_reject_rate: share of Advise and Reverse calls rejected with
  FAILED_PRECONDITION.
- send_balance: every Authorize answer carries the card's available balance
  after it (available_balance_minor; ISO 8583 field 54 at an ISO edge).

Signals:

- SIGTERM, SIGINT: graceful stop (health NOT_SERVING, in-flight calls get up to
  `--grace-s` seconds; none when hung).
- SIGUSR1: toggle hang.
- SIGUSR2: toggle a decline storm with code 96 (clears any decline_code).

Logs go to stderr, one line per event (start, fault change, ledger down or
back, stop), never per request and never with a PAN.

Traces (chaos.otel_env, from OTEL_* variables; off by default): a server span
per IssuerHost call, continuing the gateway's trace from the call metadata.

The fault gate lives in `chaos.sim_faults` and the servicers in
`chaos.sim_servicers`; this module puts them on one server and runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authgw.observability import TelemetrySettingError
from authgw.security import TlsFiles, load_tls_files
from authgw.v1 import authorization_pb2_grpc, simulator_pb2, simulator_pb2_grpc
from chaos.ledger_protocol import Ledger
from chaos.memory_ledger import MemoryLedger
from chaos.otel_env import server_interceptors, sim_telemetry
from chaos.redis_ledger import RedisLedger
from chaos.sim_faults import FaultGate, faults_problem
from chaos.sim_iso8583 import IsoHost
from chaos.sim_servicers import (
    ControlServicer,
    HangingHealth,
    HostState,
    IssuerHostServicer,
    SimCounters,
)

__all__ = ["IssuerSim", "main"]

log = logging.getLogger("authgw.issuer_sim")

ISSUER_HOST_SERVICE = "authgw.v1.IssuerHost"

_SERVER_OPTIONS = [("grpc.so_reuseport", 0)]  # a port taken by another process is an error, not a share


class IssuerSim:
    """One simulated issuer host: its gRPC server, fault gate, counters, and a ledger it does not own."""

    def __init__(
        self,
        *,
        listen: str,
        pool: str,
        member: str,
        ledger: Ledger,
        faults: simulator_pb2.Faults | None = None,
        grace_s: float = 2.0,
        rng: random.Random | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        tls: TlsFiles | None = None,
        iso8583_listen: str = "",
    ) -> None:
        """Args:
        tls: serve mutual TLS with this certificate, requiring client certificates that chain
            to `tls.ca` (the gateway's, an agent's, the harness's); None: plaintext.
        iso8583_listen: HOST:PORT of an ISO 8583 port serving the same host (chaos.sim_iso8583),
            with the same TLS; "": none.
        """
        self._iso_listen = iso8583_listen
        self._iso: IsoHost | None = None
        self.iso_port = 0
        self.listen = listen
        self._tls = tls
        self._interceptors = list(interceptors)
        self.pool = pool
        self.member = member
        self.counters = SimCounters()
        self.gate = FaultGate(faults, rng)
        self._ledger = ledger
        self._grace_s = grace_s
        self._health = HangingHealth(self.gate)
        self._server: grpc.aio.Server | None = None
        self._closing: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        """Bind and serve; raises OSError when the address cannot be bound."""
        server = grpc.aio.server(options=_SERVER_OPTIONS, interceptors=self._interceptors or None)
        host = HostState(self.pool, self.member, self._ledger, self.gate, self.counters)
        servicer = IssuerHostServicer(host)
        authorization_pb2_grpc.add_IssuerHostServicer_to_server(servicer, server)
        simulator_pb2_grpc.add_IssuerSimControlServicer_to_server(ControlServicer(host), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for service in ("", ISSUER_HOST_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        try:
            port = (
                server.add_insecure_port(self.listen)
                if self._tls is None
                else server.add_secure_port(self.listen, _server_credentials(self._tls))
            )
        except RuntimeError as exc:  # grpc's way of saying the address is taken or invalid
            raise OSError(f"cannot bind {self.listen}") from exc
        await server.start()
        self._server = server
        self.port = port
        if self._iso_listen:
            self._iso = IsoHost(self._iso_listen, servicer, self.gate, tls=self._tls)
            await self._iso.start()
            self.iso_port = self._iso.port
        log.info(
            "issuer-sim pool=%s member=%s listening on %s (port %d)",
            self.pool,
            self.member,
            self.listen,
            port,
        )

    async def close(self) -> None:
        """Stop serving: NOT_SERVING first, then drain in-flight calls (none when hung); safe twice."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        grace = 0.0 if self.gate.current.hang else self._grace_s
        log.info("issuer-sim stopping (grace %.1fs)", grace)
        if self._iso is not None:
            await self._iso.close()
        await self._server.stop(grace)
        log.info("issuer-sim stopped")

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


def _server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    material = load_tls_files(tls)
    return grpc.ssl_server_credentials(
        [(material.key_pem, material.cert_chain_pem)],
        root_certificates=material.ca_pem,
        require_client_auth=True,
    )


def _tls_files(args: argparse.Namespace) -> TlsFiles | None:
    given = [args.tls_cert, args.tls_key, args.tls_ca]
    if not any(given):
        return None
    if not all(given):
        raise SystemExit("issuer-sim: --tls-cert, --tls-key and --tls-ca go together")
    return TlsFiles(cert=Path(args.tls_cert), key=Path(args.tls_key), ca=Path(args.tls_ca))


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m chaos issuer-sim", description="an issuer host simulator")
    p.add_argument("--listen", required=True, help="HOST:PORT to serve on (port 0: any free port)")
    p.add_argument("--pool", required=True, help="pool name reported in answers")
    p.add_argument("--member", required=True, help="member (host) name reported in answers")
    p.add_argument("--latency-ms", type=int, default=0, help="latency added to Authorize/Advise/Reverse")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of calls failed UNAVAILABLE")
    p.add_argument("--decline-code", default="", help="answer every Authorize DECLINED with this code")
    p.add_argument(
        "--advise-reject-rate", type=float, default=0.0, help="share of Advise/Reverse FAILED_PRECONDITION"
    )
    p.add_argument("--hang", action="store_true", help="start hung (accept calls, answer nothing)")
    p.add_argument(
        "--send-balance", action="store_true", help="answer with the card's available balance after it"
    )
    p.add_argument("--ledger", default="", help="redis://HOST:PORT/DB: shared issuer-wide ledger")
    p.add_argument("--grace-s", type=float, default=2.0, help="drain time for in-flight calls on stop")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop")
    p.add_argument("--tls-cert", default="", help="serve mutual TLS: our certificate (PEM) ...")
    p.add_argument("--tls-key", default="", help="... its key ...")
    p.add_argument("--tls-ca", default="", help="... and the CA client certificates must chain to")
    p.add_argument(
        "--iso8583-listen", default="", help="HOST:PORT: also serve ISO 8583 (same host, same TLS)"
    )
    return p.parse_args(argv)


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


async def _serve(
    args: argparse.Namespace,
    faults: simulator_pb2.Faults,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> int:
    ledger: Ledger = RedisLedger.from_url(args.ledger) if args.ledger else MemoryLedger()
    log.info("ledger %s", _redact(args.ledger) if args.ledger else "memory (this host only)")
    sim = IssuerSim(
        listen=args.listen,
        pool=args.pool,
        member=args.member,
        ledger=ledger,
        faults=faults,
        grace_s=args.grace_s,
        interceptors=interceptors,
        tls=_tls_files(args),
        iso8583_listen=args.iso8583_listen,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, sim.gate.toggle_hang)
    loop.add_signal_handler(signal.SIGUSR2, sim.gate.toggle_decline_storm)
    try:
        await sim.start()
        await stop.wait()
        log.info("issuer-sim signalled to stop")
    finally:
        await sim.close()
        await ledger.close()
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `python -m chaos issuer-sim`; argv[0] is the command name."""
    args = _parse_args(argv[1:])
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s issuer-sim[%(process)d] %(levelname)s %(message)s",
    )
    faults = simulator_pb2.Faults(
        latency_ms=args.latency_ms, error_rate=args.error_rate, decline_code=args.decline_code,
        hang=args.hang, advise_reject_rate=args.advise_reject_rate, send_balance=args.send_balance,
    )  # fmt: skip
    problem = faults_problem(faults)
    if problem is not None:
        print(f"issuer-sim: {problem}", file=sys.stderr)
        return 2
    try:
        telemetry = sim_telemetry(args.pool, args.member)
    except TelemetrySettingError as exc:
        print(f"issuer-sim: {exc}", file=sys.stderr)
        return 2
    serving = _serve(args, faults, server_interceptors(telemetry))
    try:
        if args.uvloop:
            import uvloop  # noqa: PLC0415  # optional: imported only when asked for

            return int(uvloop.run(serving))
        return asyncio.run(serving)
    except OSError as exc:
        log.error("issuer-sim: %s", exc)  # noqa: TRY400  # a bind failure needs no traceback
        return 1
    finally:
        telemetry.shutdown()
