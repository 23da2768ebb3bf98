"""An acquirer's reversals: sent to any gateway of the fleet, again and again, until acknowledged.

A real acquirer that got no answer in time sends a timeout reversal and
repeats it until a host acknowledges it (ISO 8583 0400, then 0401 repeats);
reversals of approvals (a cancelled sale, a partial dispense) are delivered
the same way. `ReversalSender` does that for the load generator: every
submitted reversal gets its own task, tried at once on one gateway, then with
a capped exponential backoff on the next ones, until a gateway answers OK (any
ReversalStatus) or the sender is closed (the run's settle phase ended).

What counts as acknowledged: a Reverse answered OK. Everything else is
recorded on the `SentReversal` (its last status) and retried: UNAVAILABLE and
DEADLINE_EXCEEDED, but also UNIMPLEMENTED (a gateway without Reverse yet) and
refusals, since a reversal must never be dropped by the acquirer.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import grpc
import grpc.aio

from authgw.tasks import cancel_and_wait
from authgw.v1 import authorization_pb2 as pb
from chaos.gateway_stubs import AcquirerStubs

__all__ = ["ReversalSender", "SentReversal"]

_ATTEMPT_TIMEOUT_S = 1.0
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 2.0


@dataclass(slots=True)
class SentReversal:
    """One reversal the acquirer sent, and what became of it."""

    reversal_id: str
    final_amount_minor: int
    reason: str  # ReversalReason name: TERMINAL_TIMEOUT for a timeout reversal
    before_original: bool = False  # sent before the original request (on purpose)
    gateway: int = -1  # index of the gateway it was first sent to
    attempts: int = 0
    acked: bool = False
    status: str = ""  # ReversalStatus name, once acknowledged
    source: str = ""  # who acknowledged it (ISSUER | STAND_IN)
    last_error: str = ""  # gRPC status name of the last failed attempt

    @property
    def timeout(self) -> bool:
        return self.reason == "TERMINAL_TIMEOUT"


class ReversalSender:
    """Delivers reversals to the gateways until each is acknowledged or `close()` is called."""

    def __init__(self, stubs: AcquirerStubs, rng: random.Random) -> None:
        self._stubs = stubs
        self._rng = rng
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def submit(
        self, request: pb.ReverseRequest, record: SentReversal, first_target: int
    ) -> asyncio.Task[None]:
        """Start delivering `request`; the returned task ends when it is acknowledged or the sender closed."""
        task = asyncio.create_task(self._deliver(request, record, first_target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def _deliver(self, request: pb.ReverseRequest, record: SentReversal, first_target: int) -> None:
        backoff = _FIRST_BACKOFF_S
        target = first_target
        while not self._closed:
            record.attempts += 1
            stub = self._stubs.of(request.acquirer_id)[target % len(self._stubs)]
            request.transmitted_at.FromNanoseconds(time.time_ns())
            try:
                answer: pb.ReverseResponse = await stub.Reverse(request, timeout=_ATTEMPT_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                record.last_error = exc.code().name
            else:
                record.acked = True
                record.status = pb.ReversalStatus.Name(answer.status)
                record.source = pb.Source.Name(answer.source)
                return
            target += 1  # the next gateway of the fleet, like an acquirer with several links
            await asyncio.sleep(backoff * (0.5 + self._rng.random()))
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def wait_acknowledged(self, timeout_s: float) -> bool:
        """Wait until every reversal submitted so far is acknowledged; False at timeout."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        return not pending

    async def close(self) -> None:
        """Stop delivering (unacknowledged reversals stay so, recorded); safe to call twice."""
        self._closed = True
        for task in list(self._tasks):
            await cancel_and_wait(task)
