import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    POS_CHIP: _ClassVar[Channel]
    POS_CONTACTLESS: _ClassVar[Channel]
    POS_MAGSTRIPE: _ClassVar[Channel]
    ECOMMERCE: _ClassVar[Channel]
    MOTO: _ClassVar[Channel]
    ATM: _ClassVar[Channel]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    APPROVED: _ClassVar[Decision]
    DECLINED: _ClassVar[Decision]

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_UNSPECIFIED: _ClassVar[Source]
    ISSUER: _ClassVar[Source]
    STAND_IN: _ClassVar[Source]

class StandInReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NONE: _ClassVar[StandInReason]
    ALL_POOLS_FAILED: _ClassVar[StandInReason]
    NO_LIVE_MEMBERS: _ClassVar[StandInReason]
    DECLINE_STORM: _ClassVar[StandInReason]
    FORCED: _ClassVar[StandInReason]
CHANNEL_UNSPECIFIED: Channel
POS_CHIP: Channel
POS_CONTACTLESS: Channel
POS_MAGSTRIPE: Channel
ECOMMERCE: Channel
MOTO: Channel
ATM: Channel
DECISION_UNSPECIFIED: Decision
APPROVED: Decision
DECLINED: Decision
SOURCE_UNSPECIFIED: Source
ISSUER: Source
STAND_IN: Source
NONE: StandInReason
ALL_POOLS_FAILED: StandInReason
NO_LIVE_MEMBERS: StandInReason
DECLINE_STORM: StandInReason
FORCED: StandInReason

class AuthorizeRequest(_message.Message):
    __slots__ = ("request_id", "pan", "amount_minor", "currency", "mcc", "channel", "merchant_id", "terminal_id", "merchant_country", "pin_verified", "cardholder_authenticated", "transmitted_at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    MCC_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    PIN_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    CARDHOLDER_AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
    TRANSMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    pan: str
    amount_minor: int
    currency: str
    mcc: str
    channel: Channel
    merchant_id: str
    terminal_id: str
    merchant_country: str
    pin_verified: bool
    cardholder_authenticated: bool
    transmitted_at: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., pan: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., mcc: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., merchant_id: _Optional[str] = ..., terminal_id: _Optional[str] = ..., merchant_country: _Optional[str] = ..., pin_verified: _Optional[bool] = ..., cardholder_authenticated: _Optional[bool] = ..., transmitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("request_id", "decision", "response_code", "approval_code", "source", "pool", "standin_reason", "decision_id", "member", "rule")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_CODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    STANDIN_REASON_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    decision: Decision
    response_code: str
    approval_code: str
    source: Source
    pool: str
    standin_reason: StandInReason
    decision_id: str
    member: str
    rule: str
    def __init__(self, request_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., response_code: _Optional[str] = ..., approval_code: _Optional[str] = ..., source: _Optional[_Union[Source, str]] = ..., pool: _Optional[str] = ..., standin_reason: _Optional[_Union[StandInReason, str]] = ..., decision_id: _Optional[str] = ..., member: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class StandInAdvice(_message.Message):
    __slots__ = ("decision_id", "request", "decision", "response_code", "approval_code", "reason", "rule", "decided_at", "gateway_instance")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    request: AuthorizeRequest
    decision: Decision
    response_code: str
    approval_code: str
    reason: StandInReason
    rule: str
    decided_at: _timestamp_pb2.Timestamp
    gateway_instance: str
    def __init__(self, decision_id: _Optional[str] = ..., request: _Optional[_Union[AuthorizeRequest, _Mapping]] = ..., decision: _Optional[_Union[Decision, str]] = ..., response_code: _Optional[str] = ..., approval_code: _Optional[str] = ..., reason: _Optional[_Union[StandInReason, str]] = ..., rule: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gateway_instance: _Optional[str] = ...) -> None: ...

class AdviceAck(_message.Message):
    __slots__ = ("decision_id", "duplicate")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    duplicate: bool
    def __init__(self, decision_id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...
