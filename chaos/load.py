"""Open-loop load: authorizations sent at a fixed arrival rate, whatever the answers do.

A closed loop (send, wait, send) slows down when the gateway does and hides
failures; an open loop keeps arriving like shoppers at tills. Every request is
recorded: when it was sent, when and how it was answered.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc

__all__ = ["CardMix", "Sample", "run_open_loop"]


@dataclass(slots=True)
class Sample:
    """One request of a load run."""

    request_id: str
    sent_at: float  # seconds since the start of the run
    latency_s: float = -1.0  # -1: no answer (RPC error)
    status: str = "OK"  # gRPC status name
    response_code: str = ""
    source: str = ""  # ISSUER | STAND_IN
    pool: str = ""
    standin_reason: str = ""
    amount_minor: int = 0
    approved: bool = False
    decision_id: str = ""
    target: int = 0  # index of the gateway that answered

    @property
    def answered(self) -> bool:
        return self.status == "OK"


# (channel, mcc, pin_verified, authenticated, weight): a plausible European mix.
_PROFILES: tuple[tuple[int, str, bool, bool, int], ...] = (
    (pb.POS_CONTACTLESS, "5411", False, False, 30),  # groceries, tap
    (pb.POS_CHIP, "5411", True, False, 15),
    (pb.POS_CHIP, "5541", True, False, 8),  # fuel
    (pb.POS_CONTACTLESS, "5812", False, False, 10),  # restaurants
    (pb.ECOMMERCE, "5999", False, True, 15),
    (pb.ECOMMERCE, "5311", False, False, 5),
    (pb.POS_CHIP, "5912", True, False, 5),  # pharmacy
    (pb.ATM, "6011", True, False, 7),
    (pb.MOTO, "4722", False, False, 2),
    (pb.POS_MAGSTRIPE, "5411", False, False, 3),
)


class CardMix:
    """Deterministic generator of realistic requests over a pool of Luhn-valid cards."""

    def __init__(self, cards: int = 500, seed: int = 7, prefix: str = "") -> None:
        self._rng = random.Random(seed)
        self.pans = [_luhn_complete(f"49{self._rng.randrange(10**13):013d}") for _ in range(cards)]
        self._weights = [p[4] for p in _PROFILES]
        self._prefix = prefix or uuid.uuid4().hex[:8]
        self._n = 0

    def request(self) -> pb.AuthorizeRequest:
        self._n += 1
        channel, mcc, pin, authd, _ = self._rng.choices(_PROFILES, weights=self._weights)[0]
        amount = int(self._rng.lognormvariate(7.6, 1.0))  # median ~20.00, long tail
        if channel == pb.ATM:
            amount = self._rng.choice((2000, 4000, 5000, 10000, 20000))
        req = pb.AuthorizeRequest(
            request_id=f"{self._prefix}-{self._n}",
            acquirer_id="1001",
            pan=self._rng.choice(self.pans),
            amount_minor=max(100, min(amount, 500_000)),
            currency="EUR",
            mcc=mcc,
            channel=channel,  # type: ignore[arg-type]  # an enum value from the proto
            merchant_id=f"M{self._rng.randrange(1000):04d}",
            terminal_id=f"T{self._rng.randrange(100):03d}",
            merchant_country="FR" if self._rng.random() < 0.9 else "DE",
            pin_verified=pin,
            cardholder_authenticated=authd,
        )
        return req


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


async def _one(
    stubs: list[pb_grpc.AuthorizationStub], req: pb.AuthorizeRequest, sample: Sample, deadline_s: float
) -> None:
    """Send to one gateway; if it cannot be reached, to the next, like an acquirer with several links."""
    start = time.monotonic()
    first = sample.target
    for i in range(len(stubs)):
        index = (first + i) % len(stubs)
        left = deadline_s - (time.monotonic() - start)
        try:
            resp: pb.AuthorizeResponse = await stubs[index].Authorize(req, timeout=left)
        except grpc.aio.AioRpcError as exc:
            sample.status = exc.code().name
            if exc.code() != grpc.StatusCode.UNAVAILABLE or left <= 0:
                return
            continue  # that gateway is gone: the same request_id to the next one
        sample.status = "OK"
        sample.target = index
        sample.latency_s = time.monotonic() - start
        sample.response_code = resp.response_code
        sample.source = pb.Source.Name(resp.source)
        sample.pool = resp.pool
        sample.standin_reason = pb.StandInReason.Name(resp.standin_reason)
        sample.approved = resp.decision == pb.APPROVED
        sample.decision_id = resp.decision_id
        return


async def run_open_loop(
    target: str | list[str],
    *,
    rate_per_s: float,
    duration_s: float,
    make_request: Callable[[], pb.AuthorizeRequest],
    deadline_s: float = 2.0,
    on_tick: Callable[[float, list[Sample]], None] | None = None,
) -> list[Sample]:
    """Send make_request() at rate_per_s for duration_s to target(s), round robin; return every sample."""
    targets = [target] if isinstance(target, str) else target
    samples: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate_per_s
    total = int(rate_per_s * duration_s)
    channels = [grpc.aio.insecure_channel(t) for t in targets]
    stubs = [pb_grpc.AuthorizationStub(c) for c in channels]
    try:
        t0 = time.monotonic()
        next_tick = 1.0
        for i in range(total):
            due = t0 + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            req = make_request()
            sample = Sample(
                req.request_id, time.monotonic() - t0, amount_minor=req.amount_minor, target=i % len(stubs)
            )
            samples.append(sample)
            task = asyncio.create_task(_one(stubs, req, sample, deadline_s))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if on_tick is not None and sample.sent_at >= next_tick:
                on_tick(sample.sent_at, samples)
                next_tick += 1.0
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for c in channels:
            await c.close()
    return samples
