"""What answers when no issuer did: the Fallback protocol, and the plain 91 decline.

`gateway.standin_link.StandInFallback` is the real one (stand-in decisions, recorded
reversals); `DeclineFallback` is what a gateway without `[standin]` does: it declines
91 and records nothing durably. After a 91 whose attempt may have reached an issuer it
hands the request to `tell_issuer` (gateway.late_reversal: a reversal sent in the
background, in memory only), and it cannot store an acquirer's reversal (README).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Protocol

from authgw.codes import ResponseCode
from authgw.v1 import authorization_pb2 as pb
from standin.types import Reason, ReversalOutcome

__all__ = ["DeclineFallback", "Fallback", "decline_91", "proto_reason"]

log = logging.getLogger("authgw.fallback")


class Fallback(Protocol):
    """Answers when no issuer did (stand-in, or a plain 91 decline)."""

    async def answer(
        self,
        request: pb.AuthorizeRequest,
        cause: Reason,
        deadline: float,
        trace_context: str = "",
        *,
        maybe_reached_issuer: bool = False,
    ) -> pb.AuthorizeResponse:
        """Decide for `request` (`cause`: why no issuer did). Raises RequestRefused (reused id).

        `maybe_reached_issuer`: an attempt may have reached an issuer, which may hold an approval
        the acquirer never received; each fallback makes sure the issuer learns the answer given
        (stand-in advises its decision; the plain 91 reverses the request)."""
        ...

    async def decline(
        self, request: pb.AuthorizeRequest, cause: Reason, rule: str, trace_context: str = ""
    ) -> pb.AuthorizeResponse:
        """A 91 of the gateway's own after an attempt that may have reached an issuer, recorded so the
        issuer is told (the request's earlier decision, if any, is answered instead)."""
        ...

    async def reverse(
        self, request: pb.ReverseRequest, *, store: bool, trace_context: str = ""
    ) -> ReversalOutcome | None:
        """Apply or record a reversal; None when nothing can record it."""
        ...

    def observe(self, request: pb.AuthorizeRequest, response: pb.AuthorizeResponse) -> None:
        """An issuer answered `request`: keep what stand-in learns from it (never blocks)."""
        ...

    def may_refuse_reuse(self) -> bool:
        """True while a request id may be recorded in stand-in for other content that the issuer
        cannot know of yet (gateway/reuse_check.py): the issuer path asks `refuses_reuse` first."""
        ...

    async def refuses_reuse(self, request: pb.AuthorizeRequest, deadline: float) -> bool:
        """True when stand-in recorded `request`'s id for other content (then RequestRefused); asks
        for a small share of the time left before `deadline` (time.monotonic) at most."""
        ...


def proto_reason(reason: Reason) -> str:
    """The proto's StandInReason name of `reason` (names match, but an acquirer advice's: stand-in
    did not decide it, NONE)."""
    return "NONE" if reason is Reason.ACQUIRER_ADVICE else reason.value


def decline_91(request: pb.AuthorizeRequest, cause: Reason, rule: str = "") -> pb.AuthorizeResponse:
    """Issuer unavailable: the safe answer when nothing can decide."""
    return pb.AuthorizeResponse(
        request_id=request.request_id,
        decision=pb.DECLINED,
        response_code=ResponseCode.ISSUER_UNAVAILABLE.value,
        source=pb.STAND_IN,
        standin_reason=cause.value,  # Reason names are the proto enum's
        decision_id=f"gw-{uuid.uuid4().hex}",
        rule=rule,
    )


class DeclineFallback:
    """Fallback without stand-in: decline with 91 and say why; record nothing durably.

    `tell_issuer` gets each request declined 91 after an attempt that may have reached an
    issuer (it must not block: the answer waits for it)."""

    def __init__(self, tell_issuer: Callable[[pb.AuthorizeRequest], None] | None = None) -> None:
        self._tell_issuer = tell_issuer

    async def answer(
        self,
        request: pb.AuthorizeRequest,
        cause: Reason,
        deadline: float,
        trace_context: str = "",
        *,
        maybe_reached_issuer: bool = False,
    ) -> pb.AuthorizeResponse:
        if maybe_reached_issuer:  # a plain 91 the issuer may have approved: tell it
            return await self.decline(request, cause, "", trace_context)
        return decline_91(request, cause)

    async def decline(
        self, request: pb.AuthorizeRequest, cause: Reason, rule: str, trace_context: str = ""
    ) -> pb.AuthorizeResponse:
        if self._tell_issuer is None:
            log.warning(
                "request %s: 91 after an attempt that may have reached an issuer, and nothing to tell it",
                request.request_id,
            )
        else:
            self._tell_issuer(request)
        return decline_91(request, cause, rule)

    async def reverse(
        self, request: pb.ReverseRequest, *, store: bool, trace_context: str = ""
    ) -> ReversalOutcome | None:
        return None

    def observe(self, request: pb.AuthorizeRequest, response: pb.AuthorizeResponse) -> None:
        """Nothing to keep without stand-in."""

    def may_refuse_reuse(self) -> bool:
        return False  # nothing recorded: the issuer's books are the only record

    async def refuses_reuse(self, request: pb.AuthorizeRequest, deadline: float) -> bool:
        return False
