"""What the load generator records of each request: its answers, refusals and reversals.

A `Sample` is one request as its acquirer knows it: (acquirer_id,
request_id) and one content. The oracle (`chaos.verify`) derives from it what
the acquirer finally holds the card to; reports summarize its latency and
source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from authgw.v1 import authorization_pb2 as pb
from chaos.reversals import SentReversal

__all__ = ["Answer", "Outcome", "Sample"]


class Outcome(StrEnum):
    """How one send of a request ended, for its acquirer."""

    ANSWERED = "answered"
    REFUSED = "refused"  # a gRPC status the acquirer understands as "not done" (ALREADY_EXISTS, ...)
    NO_ANSWER = "no_answer"  # deadline, cancel, connection lost...: a timeout reversal follows


@dataclass(slots=True)
class Answer:
    """One answer an acquirer received."""

    response_code: str
    approved: bool
    source: str  # ISSUER | STAND_IN | ACQUIRER (an acquirer advice, acknowledged)
    decision_id: str
    standin_reason: str = ""
    at_s: float = 0.0  # seconds since the start of the run
    rule: str = ""  # the stand-in rule that decided (e.g. redis.reply_lost), "" for an issuer's


@dataclass(slots=True)
class Sample:
    """One request of a load run: (acquirer_id, request_id) and one content.

    status and latency_s are those of its first send (availability and latency); the answer
    fields (response_code ... decision_id) are those of the last answer it got.
    """

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
    deadline_s: float = 0.0  # the deadline its first send was given
    acquirer_id: str = ""
    digest: str = ""  # chaos.request_key.content_digest of its content
    answers: list[Answer] = field(default_factory=list)  # every answer received, in order
    last_outcome: str = ""  # Outcome of its last send ("" for a run without the acquirer's record)
    refusals: list[str] = field(default_factory=list)  # gRPC status names of refused sends
    reversals: list[SentReversal] = field(default_factory=list)
    sends: int = 0
    reused: bool = False  # its request_id was reused on purpose with other content (refusal expected)
    cancelled: bool = False  # its acquirer cancelled a send on purpose
    advice: str = ""  # AcquirerAdviceKind name when sent as an acquirer advice (money already spent)

    @property
    def answered(self) -> bool:
        return self.status == "OK"

    @property
    def judged(self) -> bool:
        """Counts for availability: not a probe expected to be refused, not cancelled by its client,
        not an acquirer advice (no decision asked)."""
        return not (self.reused or self.cancelled or self.advice)

    def record_advice(self, ack: pb.AdviceAck, at_s: float) -> None:
        """Note the acknowledgement of an acquirer advice: an approval the acquirer gave itself."""
        answer = Answer("00", True, "ACQUIRER", ack.decision_id, "", at_s)
        self.answers.append(answer)
        self.last_outcome = Outcome.ANSWERED
        self.response_code, self.approved, self.source = "00", True, "ACQUIRER"
        self.decision_id = ack.decision_id

    def record_answer(self, response: pb.AuthorizeResponse, at_s: float) -> None:
        """Note an answer: it becomes what the acquirer holds (the last one wins)."""
        answer = Answer(
            response.response_code, response.decision == pb.APPROVED, pb.Source.Name(response.source),
            response.decision_id, pb.StandInReason.Name(response.standin_reason), at_s, response.rule,
        )  # fmt: skip
        self.answers.append(answer)
        self.last_outcome = Outcome.ANSWERED
        self.response_code, self.approved, self.source = answer.response_code, answer.approved, answer.source
        self.decision_id, self.standin_reason, self.pool = (
            answer.decision_id,
            answer.standin_reason,
            response.pool,
        )
