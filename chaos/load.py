"""Open-loop load: authorizations sent at a fixed arrival rate, whatever the answers do.

A closed loop (send, wait, send) slows down when the gateway does and hides
failures; an open loop keeps arriving like shoppers at tills. Every request is
recorded as a `Sample`: when it was sent, every answer it got (the last one
is what the acquirer holds), refusals, and the reversals its acquirer sent.
The acquirer's behaviour (timeout reversals, repeats, reused ids, reversals,
cancels) is `chaos.acquirer`'s; `run_open_loop` is its plain form.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence

from authgw.v1 import authorization_pb2 as pb
from chaos.acquirer import Acquirer
from chaos.samples import Sample

__all__ = ["CardMix", "Sample", "run_open_loop"]


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

    def __init__(
        self, cards: int = 500, seed: int = 7, prefix: str = "", acquirer_ids: Sequence[str] = ("1001",)
    ) -> None:
        self._rng = random.Random(seed)
        self.pans = [_luhn_complete(f"49{self._rng.randrange(10**13):013d}") for _ in range(cards)]
        self._weights = [p[4] for p in _PROFILES]
        self._prefix = prefix or uuid.uuid4().hex[:8]
        self._acquirers = list(acquirer_ids)
        self._n = 0

    def request(self) -> pb.AuthorizeRequest:
        """The next request: request_ids are unique across the mix, hence per acquirer."""
        self._n += 1
        channel, mcc, pin, authd, _ = self._rng.choices(_PROFILES, weights=self._weights)[0]
        amount = int(self._rng.lognormvariate(7.6, 1.0))  # median ~20.00, long tail
        if channel == pb.ATM:
            amount = self._rng.choice((2000, 4000, 5000, 10000, 20000))
        req = pb.AuthorizeRequest(
            acquirer_id=self._acquirers[0]
            if len(self._acquirers) == 1
            else self._rng.choice(self._acquirers),
            request_id=f"{self._prefix}-{self._n}",
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


async def run_open_loop(
    target: str | list[str],
    *,
    rate_per_s: float,
    duration_s: float,
    make_request: Callable[[], pb.AuthorizeRequest],
    deadline_s: float = 2.0,
    on_tick: Callable[[float, list[Sample]], None] | None = None,
) -> list[Sample]:
    """Send make_request() at rate_per_s for duration_s to target(s), round robin; return every sample.

    The acquirer sends each request once; a request left without an answer gets a timeout
    reversal, delivered until this returns (a run with a settle phase uses `chaos.acquirer`).
    """
    targets = [target] if isinstance(target, str) else target
    async with Acquirer(targets, deadline_s=deadline_s) as acquirer:
        return await acquirer.run(rate_per_s, duration_s, make_request, on_tick)
