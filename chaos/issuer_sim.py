"""Issuer host simulator: `authgw issuer-sim --listen HOST:PORT --pool NAME --member NAME`.

One process is one issuer host. It serves, on one port:

- `authgw.v1.IssuerHost` (Authorize, Advise), deciding like an issuer from the
  card's deterministic profile (`chaos.ledger.card_profile`): blocked 05, lost
  41, stolen 43, amount over the available balance 51, else 00 with a
  6-character approval code and the amount held. The same request_id always
  gets the same answer and is held once; advices are recorded once per
  decision_id and, when approved, debited once.
- `grpc.health.v1.Health`: SERVING for "" and "authgw.v1.IssuerHost".
- `authgw.v1.IssuerSimControl`: SetFaults (replaces every fault at once) and
  Report (this host's counters, current faults, the ledger's advices).

Accounts live in a `chaos.ledger.Ledger`: private to the process by default,
or issuer-wide with `--ledger redis://HOST:PORT/DB`, shared by every host given
the same URL. A ledger that does not answer in time fails the call with
UNAVAILABLE.

Faults (flags at start, SetFaults at run time):

- latency_ms: added before answering Authorize and Advise.
- error_rate: share of Authorize/Advise calls failed with UNAVAILABLE.
- decline_code: every Authorize answered DECLINED with that code, e.g. "96"
  (a decline storm); such answers are not recorded, so a retry of the same
  request_id elsewhere gets the real decision.
- hang: Authorize, Advise and Health/Check accept calls and answer nothing
  until hang is cleared (IssuerSimControl still answers).
- advise_reject_rate: share of Advise calls rejected with FAILED_PRECONDITION.

Signals:

- SIGTERM, SIGINT: graceful stop (health NOT_SERVING, in-flight calls get up to
  `--grace-s` seconds; none when hung).
- SIGUSR1: toggle hang.
- SIGUSR2: toggle a decline storm with code 96 (clears any decline_code).

Logs go to stderr, one line per event (start, fault change, ledger down or
back, stop), never per request and never with a PAN.

Traces (chaos.otel_env, from OTEL_* variables; off by default): a server span
per IssuerHost call, continuing the gateway's trace from the call metadata.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import secrets
import signal
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Never

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authgw.v1 import authorization_pb2 as apb
from authgw.v1 import authorization_pb2_grpc, simulator_pb2, simulator_pb2_grpc
from chaos.ledger import (
    AdviceEntry,
    HoldAttempt,
    Ledger,
    LedgerUnavailable,
    MemoryLedger,
    RedisLedger,
    luhn_valid,
)
from chaos.otel_env import server_interceptors, sim_telemetry
from health.telemetry import TelemetrySettingError

__all__ = ["FaultGate", "IssuerSim", "SimCounters", "faults_problem", "main"]

log = logging.getLogger("authgw.issuer_sim")

ISSUER_HOST_SERVICE = "authgw.v1.IssuerHost"
_APPROVAL_ALPHABET = string.ascii_uppercase + string.digits
_AnyContext = grpc.aio.ServicerContext[Any, Any]
_AuthorizeContext = grpc.aio.ServicerContext[apb.AuthorizeRequest, apb.AuthorizeResponse]
_AdviseContext = grpc.aio.ServicerContext[apb.StandInAdvice, apb.AdviceAck]

_SERVER_OPTIONS = [("grpc.so_reuseport", 0)]  # a port taken by another process is an error, not a share


def faults_problem(faults: simulator_pb2.Faults) -> str | None:
    """Why `faults` cannot be applied, or None."""
    if faults.latency_ms < 0:
        return "latency_ms must be >= 0"
    if not 0.0 <= faults.error_rate <= 1.0:
        return "error_rate must be within 0..1"
    if not 0.0 <= faults.advise_reject_rate <= 1.0:
        return "advise_reject_rate must be within 0..1"
    if faults.decline_code and not (len(faults.decline_code) == 2 and faults.decline_code.isdigit()):
        return "decline_code must be empty or two digits (ISO 8583 field 39)"
    if faults.decline_code == "00":
        return "decline_code 00 is an approval, not a decline"
    return None


def _describe(faults: simulator_pb2.Faults) -> str:
    return (
        f"latency_ms={faults.latency_ms} error_rate={faults.error_rate:g} "
        f"decline_code={faults.decline_code or '-'} hang={faults.hang} "
        f"advise_reject_rate={faults.advise_reject_rate:g}"
    )


class FaultGate:
    """The host's current faults, read on every call; hung calls wait on an event."""

    def __init__(self, faults: simulator_pb2.Faults | None = None, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._released = asyncio.Event()
        self.current = simulator_pb2.Faults()  # replaced whole, never changed in place
        self.replace(faults or simulator_pb2.Faults())

    def replace(self, faults: simulator_pb2.Faults) -> None:
        """Apply `faults` (validated by the caller with `faults_problem`) in place of all current ones."""
        self.current = simulator_pb2.Faults()
        self.current.CopyFrom(faults)
        if faults.hang:
            self._released.clear()
        else:
            self._released.set()  # wakes every hung call
        log.info("faults %s", _describe(faults))

    def toggle_hang(self) -> None:
        faults = simulator_pb2.Faults()
        faults.CopyFrom(self.current)
        faults.hang = not faults.hang
        self.replace(faults)

    def toggle_decline_storm(self) -> None:
        faults = simulator_pb2.Faults()
        faults.CopyFrom(self.current)
        faults.decline_code = "" if faults.decline_code else "96"
        self.replace(faults)

    async def wait_released(self) -> None:
        """Return at once unless hung; otherwise when hang is cleared."""
        if self.current.hang:
            await self._released.wait()

    def rejects(self, rate: float) -> bool:
        return rate > 0.0 and self._rng.random() < rate

    async def enter(self, context: _AnyContext) -> None:
        """Apply hang, latency and error rate to one Authorize or Advise call."""
        if self.current.hang:
            await self._released.wait()
        if self.current.latency_ms > 0:
            await asyncio.sleep(self.current.latency_ms / 1000.0)
        if self.rejects(self.current.error_rate):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "issuer-sim: injected error")

    def approval_code(self) -> str:
        return "".join(self._rng.choices(_APPROVAL_ALPHABET, k=6))


@dataclass
class SimCounters:
    """Per-host counters reported by IssuerSimControl/Report."""

    authorize_calls: int = 0  # every Authorize received, faulted or not
    approvals: int = 0  # first answers that approved
    declines: int = 0  # first answers that declined, decline-storm answers included
    repeated_request_ids: int = 0  # answered from the ledger's memory
    advise_calls: int = 0  # every Advise received, faulted or not
    duplicate_advices: int = 0
    approved_request_ids: list[str] = field(default_factory=list)


def _advice_problem(advice: apb.StandInAdvice) -> str | None:
    if not advice.decision_id:
        return "empty decision_id"
    if not advice.HasField("request"):
        return "missing request"
    if not luhn_valid(advice.request.pan):
        return "PAN is not 12-19 digits passing the Luhn check"
    if advice.request.amount_minor <= 0:
        return "amount_minor must be > 0"
    if advice.decision not in (apb.APPROVED, apb.DECLINED):
        return "decision must be APPROVED or DECLINED"
    return None


@dataclass
class _Host:
    """What both servicers of one host share."""

    pool: str
    member: str
    ledger: Ledger
    gate: FaultGate
    counters: SimCounters
    ledger_down: bool = False

    async def ledger_failed(self, context: _AnyContext, exc: LedgerUnavailable) -> Never:
        if not self.ledger_down:
            self.ledger_down = True
            log.warning("ledger unavailable: %s", exc)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "issuer-sim: ledger unavailable")

    def ledger_ok(self) -> None:
        if self.ledger_down:
            self.ledger_down = False
            log.info("ledger available again")


class IssuerHostServicer(authorization_pb2_grpc.IssuerHostServicer):
    """authgw.v1.IssuerHost backed by a ledger, behind the fault gate."""

    def __init__(self, host: _Host) -> None:
        self._host = host
        self._id_prefix = f"iss-{secrets.token_hex(6)}-"  # unique across hosts and restarts
        self._next_id = 0

    def _decision_id(self) -> str:
        self._next_id += 1
        return f"{self._id_prefix}{self._next_id:x}"

    def _declined(self, request: apb.AuthorizeRequest, code: str) -> apb.AuthorizeResponse:
        self._host.counters.declines += 1
        return apb.AuthorizeResponse(
            request_id=request.request_id, decision=apb.DECLINED, response_code=code, source=apb.ISSUER,
            pool=self._host.pool, member=self._host.member, decision_id=self._decision_id(),
        )  # fmt: skip

    async def Authorize(
        self, request: apb.AuthorizeRequest, context: _AuthorizeContext
    ) -> apb.AuthorizeResponse:
        host, counters = self._host, self._host.counters
        counters.authorize_calls += 1
        await host.gate.enter(context)
        if host.gate.current.decline_code:
            return self._declined(request, host.gate.current.decline_code)
        if not request.request_id or request.amount_minor <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request_id and amount_minor > 0 required")
        if not luhn_valid(request.pan):
            return self._declined(request, "14")  # invalid card number
        attempt = HoldAttempt(
            request.request_id, request.pan, request.amount_minor, self._decision_id(),
            host.gate.approval_code(), host.pool, host.member,
        )  # fmt: skip
        try:
            answer = await host.ledger.authorize(attempt)
        except LedgerUnavailable as exc:
            await host.ledger_failed(context, exc)
        host.ledger_ok()
        approved = answer.response_code == "00"
        if answer.repeated:
            counters.repeated_request_ids += 1
        elif approved:
            counters.approvals += 1
            counters.approved_request_ids.append(request.request_id)
        else:
            counters.declines += 1
        return apb.AuthorizeResponse(
            request_id=request.request_id, decision=apb.APPROVED if approved else apb.DECLINED,
            response_code=answer.response_code, approval_code=answer.approval_code, source=apb.ISSUER,
            pool=answer.pool, member=answer.member, decision_id=answer.decision_id,
        )  # fmt: skip

    async def Advise(self, request: apb.StandInAdvice, context: _AdviseContext) -> apb.AdviceAck:
        host = self._host
        host.counters.advise_calls += 1
        await host.gate.enter(context)
        if host.gate.rejects(host.gate.current.advise_reject_rate):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "issuer-sim: advice rejected (injected)")
        problem = _advice_problem(request)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"poison advice: {problem}")
        entry = AdviceEntry(
            request.decision_id, request.request.pan, request.decision == apb.APPROVED,
            request.request.amount_minor, request.response_code, request.request.request_id,
        )  # fmt: skip
        try:
            duplicate = await host.ledger.advise(entry)
        except LedgerUnavailable as exc:
            await host.ledger_failed(context, exc)
        host.ledger_ok()
        if duplicate:
            host.counters.duplicate_advices += 1
        return apb.AdviceAck(decision_id=request.decision_id, duplicate=duplicate)


class ControlServicer(simulator_pb2_grpc.IssuerSimControlServicer):
    """authgw.v1.IssuerSimControl: never subject to faults."""

    def __init__(self, host: _Host) -> None:
        self._host = host

    async def SetFaults(
        self, request: simulator_pb2.SetFaultsRequest, context: _AnyContext
    ) -> simulator_pb2.Faults:
        problem = faults_problem(request.faults)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"faults: {problem}")
        self._host.gate.replace(request.faults)
        return self._host.gate.current

    async def Report(
        self, request: simulator_pb2.ReportRequest, context: _AnyContext
    ) -> simulator_pb2.SimReport:
        host, c = self._host, self._host.counters
        try:
            advices = await host.ledger.advices()
        except LedgerUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"issuer-sim: {exc}")
        return simulator_pb2.SimReport(
            pool=host.pool, member=host.member, authorize_calls=c.authorize_calls, approvals=c.approvals,
            declines=c.declines, repeated_request_ids=c.repeated_request_ids, advise_calls=c.advise_calls,
            duplicate_advices=c.duplicate_advices, faults=host.gate.current,
            approved_request_ids=c.approved_request_ids,
            advices=[
                simulator_pb2.AdviceRecord(
                    decision_id=a.decision_id, received=a.received, applied=a.applied,
                    amount_minor=a.amount_minor, response_code=a.response_code, request_id=a.request_id,
                )
                for a in advices
            ],
        )  # fmt: skip


class HangingHealth(health.aio.HealthServicer):  # type: ignore[misc]  # grpc_health ships no types
    """grpc.health.v1.Health whose Check hangs with the host, as a hung process's would."""

    def __init__(self, gate: FaultGate) -> None:
        super().__init__()
        self._gate = gate

    async def Check(self, request: health_pb2.HealthCheckRequest, context: _AnyContext) -> Any:
        await self._gate.wait_released()
        return await super().Check(request, context)


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
    ) -> None:
        self.listen = listen
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
        host = _Host(self.pool, self.member, self._ledger, self.gate, self.counters)
        authorization_pb2_grpc.add_IssuerHostServicer_to_server(IssuerHostServicer(host), server)
        simulator_pb2_grpc.add_IssuerSimControlServicer_to_server(ControlServicer(host), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for service in ("", ISSUER_HOST_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        try:
            port = server.add_insecure_port(self.listen)
        except RuntimeError as exc:  # grpc's way of saying the address is taken or invalid
            raise OSError(f"cannot bind {self.listen}") from exc
        await server.start()
        self._server = server
        self.port = port
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
        await self._server.stop(grace)
        log.info("issuer-sim stopped")

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="authgw issuer-sim", description="Run an issuer host simulator.")
    p.add_argument("--listen", required=True, help="HOST:PORT to serve on (port 0: any free port)")
    p.add_argument("--pool", required=True, help="pool name reported in answers")
    p.add_argument("--member", required=True, help="member (host) name reported in answers")
    p.add_argument("--latency-ms", type=int, default=0, help="latency added to Authorize/Advise")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of calls failed UNAVAILABLE")
    p.add_argument("--decline-code", default="", help="answer every Authorize DECLINED with this code")
    p.add_argument(
        "--advise-reject-rate", type=float, default=0.0, help="share of Advise FAILED_PRECONDITION"
    )
    p.add_argument("--hang", action="store_true", help="start hung (accept calls, answer nothing)")
    p.add_argument("--ledger", default="", help="redis://HOST:PORT/DB: shared issuer-wide ledger")
    p.add_argument("--grace-s", type=float, default=2.0, help="drain time for in-flight calls on stop")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop")
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
    """Entry point of `authgw issuer-sim`; argv[0] is the command name."""
    args = _parse_args(argv[1:])
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s issuer-sim[%(process)d] %(levelname)s %(message)s",
    )
    faults = simulator_pb2.Faults(
        latency_ms=args.latency_ms, error_rate=args.error_rate, decline_code=args.decline_code,
        hang=args.hang, advise_reject_rate=args.advise_reject_rate,
    )  # fmt: skip
    problem = faults_problem(faults)
    if problem is not None:
        print(f"authgw issuer-sim: {problem}", file=sys.stderr)
        return 2
    try:
        telemetry = sim_telemetry(args.pool, args.member)
    except TelemetrySettingError as exc:
        print(f"authgw issuer-sim: {exc}", file=sys.stderr)
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
