from authgw.v1 import authorization_pb2 as _authorization_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Faults(_message.Message):
    __slots__ = ("latency_ms", "error_rate", "decline_code", "hang", "advise_reject_rate", "send_balance")
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    DECLINE_CODE_FIELD_NUMBER: _ClassVar[int]
    HANG_FIELD_NUMBER: _ClassVar[int]
    ADVISE_REJECT_RATE_FIELD_NUMBER: _ClassVar[int]
    SEND_BALANCE_FIELD_NUMBER: _ClassVar[int]
    latency_ms: int
    error_rate: float
    decline_code: str
    hang: bool
    advise_reject_rate: float
    send_balance: bool
    def __init__(self, latency_ms: _Optional[int] = ..., error_rate: _Optional[float] = ..., decline_code: _Optional[str] = ..., hang: _Optional[bool] = ..., advise_reject_rate: _Optional[float] = ..., send_balance: _Optional[bool] = ...) -> None: ...

class SetFaultsRequest(_message.Message):
    __slots__ = ("faults",)
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    faults: Faults
    def __init__(self, faults: _Optional[_Union[Faults, _Mapping]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AdviceRecord(_message.Message):
    __slots__ = ("decision_id", "received", "applied", "amount_minor", "response_code", "request_id")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    received: int
    applied: bool
    amount_minor: int
    response_code: str
    request_id: str
    def __init__(self, decision_id: _Optional[str] = ..., received: _Optional[int] = ..., applied: _Optional[bool] = ..., amount_minor: _Optional[int] = ..., response_code: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class SimReport(_message.Message):
    __slots__ = ("pool", "member", "authorize_calls", "approvals", "declines", "repeated_request_ids", "advise_calls", "duplicate_advices", "advices", "faults", "approved_request_ids", "reverse_calls", "refused_other_content", "duplicate_reversals")
    POOL_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZE_CALLS_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    DECLINES_FIELD_NUMBER: _ClassVar[int]
    REPEATED_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    ADVISE_CALLS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_ADVICES_FIELD_NUMBER: _ClassVar[int]
    ADVICES_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    APPROVED_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    REVERSE_CALLS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_OTHER_CONTENT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_REVERSALS_FIELD_NUMBER: _ClassVar[int]
    pool: str
    member: str
    authorize_calls: int
    approvals: int
    declines: int
    repeated_request_ids: int
    advise_calls: int
    duplicate_advices: int
    advices: _containers.RepeatedCompositeFieldContainer[AdviceRecord]
    faults: Faults
    approved_request_ids: _containers.RepeatedScalarFieldContainer[str]
    reverse_calls: int
    refused_other_content: int
    duplicate_reversals: int
    def __init__(self, pool: _Optional[str] = ..., member: _Optional[str] = ..., authorize_calls: _Optional[int] = ..., approvals: _Optional[int] = ..., declines: _Optional[int] = ..., repeated_request_ids: _Optional[int] = ..., advise_calls: _Optional[int] = ..., duplicate_advices: _Optional[int] = ..., advices: _Optional[_Iterable[_Union[AdviceRecord, _Mapping]]] = ..., faults: _Optional[_Union[Faults, _Mapping]] = ..., approved_request_ids: _Optional[_Iterable[str]] = ..., reverse_calls: _Optional[int] = ..., refused_other_content: _Optional[int] = ..., duplicate_reversals: _Optional[int] = ...) -> None: ...

class RequestBook(_message.Message):
    __slots__ = ("acquirer_id", "request_id", "digest", "claimed", "amount_minor", "own", "advices", "reversals", "final_minor", "approval_advices")
    ACQUIRER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    OWN_FIELD_NUMBER: _ClassVar[int]
    ADVICES_FIELD_NUMBER: _ClassVar[int]
    REVERSALS_FIELD_NUMBER: _ClassVar[int]
    FINAL_MINOR_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ADVICES_FIELD_NUMBER: _ClassVar[int]
    acquirer_id: str
    request_id: str
    digest: str
    claimed: bool
    amount_minor: int
    own: OwnAnswer
    advices: _containers.RepeatedCompositeFieldContainer[AdviceBooked]
    reversals: _containers.RepeatedCompositeFieldContainer[ReversalBooked]
    final_minor: int
    approval_advices: int
    def __init__(self, acquirer_id: _Optional[str] = ..., request_id: _Optional[str] = ..., digest: _Optional[str] = ..., claimed: _Optional[bool] = ..., amount_minor: _Optional[int] = ..., own: _Optional[_Union[OwnAnswer, _Mapping]] = ..., advices: _Optional[_Iterable[_Union[AdviceBooked, _Mapping]]] = ..., reversals: _Optional[_Iterable[_Union[ReversalBooked, _Mapping]]] = ..., final_minor: _Optional[int] = ..., approval_advices: _Optional[int] = ...) -> None: ...

class OwnAnswer(_message.Message):
    __slots__ = ("arrived", "response_code", "held_minor", "forwarded_at_us")
    ARRIVED_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    HELD_MINOR_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_AT_US_FIELD_NUMBER: _ClassVar[int]
    arrived: bool
    response_code: str
    held_minor: int
    forwarded_at_us: int
    def __init__(self, arrived: _Optional[bool] = ..., response_code: _Optional[str] = ..., held_minor: _Optional[int] = ..., forwarded_at_us: _Optional[int] = ...) -> None: ...

class AdviceBooked(_message.Message):
    __slots__ = ("decision_id", "approved", "amount_minor", "answered_at_us", "origin", "received", "response_code")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_US_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    approved: bool
    amount_minor: int
    answered_at_us: int
    origin: _authorization_pb2.AdviceOrigin
    received: int
    response_code: str
    def __init__(self, decision_id: _Optional[str] = ..., approved: _Optional[bool] = ..., amount_minor: _Optional[int] = ..., answered_at_us: _Optional[int] = ..., origin: _Optional[_Union[_authorization_pb2.AdviceOrigin, str]] = ..., received: _Optional[int] = ..., response_code: _Optional[str] = ...) -> None: ...

class ReversalBooked(_message.Message):
    __slots__ = ("reversal_id", "final_amount_minor", "status", "received")
    REVERSAL_ID_FIELD_NUMBER: _ClassVar[int]
    FINAL_AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    reversal_id: str
    final_amount_minor: int
    status: _authorization_pb2.ReversalStatus
    received: int
    def __init__(self, reversal_id: _Optional[str] = ..., final_amount_minor: _Optional[int] = ..., status: _Optional[_Union[_authorization_pb2.ReversalStatus, str]] = ..., received: _Optional[int] = ...) -> None: ...

class UnexplainedPostings(_message.Message):
    __slots__ = ("cards", "amount_minor")
    CARDS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    cards: int
    amount_minor: int
    def __init__(self, cards: _Optional[int] = ..., amount_minor: _Optional[int] = ...) -> None: ...

class BooksRequest(_message.Message):
    __slots__ = ("page_size",)
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    def __init__(self, page_size: _Optional[int] = ...) -> None: ...

class BookPage(_message.Message):
    __slots__ = ("books", "last", "unexplained")
    BOOKS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    UNEXPLAINED_FIELD_NUMBER: _ClassVar[int]
    books: _containers.RepeatedCompositeFieldContainer[RequestBook]
    last: bool
    unexplained: UnexplainedPostings
    def __init__(self, books: _Optional[_Iterable[_Union[RequestBook, _Mapping]]] = ..., last: _Optional[bool] = ..., unexplained: _Optional[_Union[UnexplainedPostings, _Mapping]] = ...) -> None: ...
