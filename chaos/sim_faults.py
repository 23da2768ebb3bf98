"""The issuer simulator's faults: their validation, and the gate every faulted call passes.

A host's faults are one `simulator_pb2.Faults` (what each does is in
`chaos.issuer_sim`), replaced whole by flags at start, SetFaults or a signal,
never changed in place. The gate also draws approval codes, from the same
injectable random source as the error and reject rates.
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
from typing import Any

import grpc
import grpc.aio

from authgw.v1 import simulator_pb2

__all__ = ["FaultGate", "faults_problem"]

log = logging.getLogger("authgw.issuer_sim")

_APPROVAL_ALPHABET = string.ascii_uppercase + string.digits
_AnyContext = grpc.aio.ServicerContext[Any, Any]


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
        f"advise_reject_rate={faults.advise_reject_rate:g} send_balance={faults.send_balance}"
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
