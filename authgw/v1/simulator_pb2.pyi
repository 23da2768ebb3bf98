from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Faults(_message.Message):
    __slots__ = ("latency_ms", "error_rate", "decline_code", "hang", "advise_reject_rate")
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    DECLINE_CODE_FIELD_NUMBER: _ClassVar[int]
    HANG_FIELD_NUMBER: _ClassVar[int]
    ADVISE_REJECT_RATE_FIELD_NUMBER: _ClassVar[int]
    latency_ms: int
    error_rate: float
    decline_code: str
    hang: bool
    advise_reject_rate: float
    def __init__(self, latency_ms: _Optional[int] = ..., error_rate: _Optional[float] = ..., decline_code: _Optional[str] = ..., hang: _Optional[bool] = ..., advise_reject_rate: _Optional[float] = ...) -> None: ...

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
    __slots__ = ("pool", "member", "authorize_calls", "approvals", "declines", "repeated_request_ids", "advise_calls", "duplicate_advices", "advices", "faults", "approved_request_ids")
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
    def __init__(self, pool: _Optional[str] = ..., member: _Optional[str] = ..., authorize_calls: _Optional[int] = ..., approvals: _Optional[int] = ..., declines: _Optional[int] = ..., repeated_request_ids: _Optional[int] = ..., advise_calls: _Optional[int] = ..., duplicate_advices: _Optional[int] = ..., advices: _Optional[_Iterable[_Union[AdviceRecord, _Mapping]]] = ..., faults: _Optional[_Union[Faults, _Mapping]] = ..., approved_request_ids: _Optional[_Iterable[str]] = ...) -> None: ...
