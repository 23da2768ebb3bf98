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
    CLIENT_DEADLINE: _ClassVar[StandInReason]

class AuthorizationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NORMAL: _ClassVar[AuthorizationType]
    PRE_AUTHORIZATION: _ClassVar[AuthorizationType]

class VerificationResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOT_CHECKED: _ClassVar[VerificationResult]
    PASSED: _ClassVar[VerificationResult]
    FAILED: _ClassVar[VerificationResult]

class ReversalReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVERSAL_REASON_UNSPECIFIED: _ClassVar[ReversalReason]
    CARDHOLDER_CANCEL: _ClassVar[ReversalReason]
    TERMINAL_TIMEOUT: _ClassVar[ReversalReason]
    PARTIAL_DISPENSE: _ClassVar[ReversalReason]
    SUSPECTED_FRAUD: _ClassVar[ReversalReason]
    OTHER: _ClassVar[ReversalReason]
    PREAUTH_COMPLETION: _ClassVar[ReversalReason]

class ReversalStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVERSAL_STATUS_UNSPECIFIED: _ClassVar[ReversalStatus]
    APPLIED: _ClassVar[ReversalStatus]
    STORED: _ClassVar[ReversalStatus]
    NO_EFFECT: _ClassVar[ReversalStatus]

class AcquirerAdviceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACQUIRER_ADVICE_KIND_UNSPECIFIED: _ClassVar[AcquirerAdviceKind]
    FORCED_POST: _ClassVar[AcquirerAdviceKind]
    OFFLINE_APPROVED: _ClassVar[AcquirerAdviceKind]

class AdviceOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAND_IN_DECISION: _ClassVar[AdviceOrigin]
    ACQUIRER_FORCED_POST: _ClassVar[AdviceOrigin]
    ACQUIRER_OFFLINE: _ClassVar[AdviceOrigin]
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
CLIENT_DEADLINE: StandInReason
NORMAL: AuthorizationType
PRE_AUTHORIZATION: AuthorizationType
NOT_CHECKED: VerificationResult
PASSED: VerificationResult
FAILED: VerificationResult
REVERSAL_REASON_UNSPECIFIED: ReversalReason
CARDHOLDER_CANCEL: ReversalReason
TERMINAL_TIMEOUT: ReversalReason
PARTIAL_DISPENSE: ReversalReason
SUSPECTED_FRAUD: ReversalReason
OTHER: ReversalReason
PREAUTH_COMPLETION: ReversalReason
REVERSAL_STATUS_UNSPECIFIED: ReversalStatus
APPLIED: ReversalStatus
STORED: ReversalStatus
NO_EFFECT: ReversalStatus
ACQUIRER_ADVICE_KIND_UNSPECIFIED: AcquirerAdviceKind
FORCED_POST: AcquirerAdviceKind
OFFLINE_APPROVED: AcquirerAdviceKind
STAND_IN_DECISION: AdviceOrigin
ACQUIRER_FORCED_POST: AdviceOrigin
ACQUIRER_OFFLINE: AdviceOrigin

class Verification(_message.Message):
    __slots__ = ("card_verification_value", "chip_cryptogram", "pin")
    CARD_VERIFICATION_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHIP_CRYPTOGRAM_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    card_verification_value: VerificationResult
    chip_cryptogram: VerificationResult
    pin: VerificationResult
    def __init__(self, card_verification_value: _Optional[_Union[VerificationResult, str]] = ..., chip_cryptogram: _Optional[_Union[VerificationResult, str]] = ..., pin: _Optional[_Union[VerificationResult, str]] = ...) -> None: ...

class SensitiveData(_message.Message):
    __slots__ = ("pin_block", "track2", "track1", "chip_data")
    PIN_BLOCK_FIELD_NUMBER: _ClassVar[int]
    TRACK2_FIELD_NUMBER: _ClassVar[int]
    TRACK1_FIELD_NUMBER: _ClassVar[int]
    CHIP_DATA_FIELD_NUMBER: _ClassVar[int]
    pin_block: bytes
    track2: str
    track1: str
    chip_data: bytes
    def __init__(self, pin_block: _Optional[bytes] = ..., track2: _Optional[str] = ..., track1: _Optional[str] = ..., chip_data: _Optional[bytes] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("request_id", "pan", "amount_minor", "currency", "mcc", "channel", "merchant_id", "terminal_id", "merchant_country", "pin_verified", "cardholder_authenticated", "transmitted_at", "acquirer_id", "processing_code", "card_expiry", "stan", "rrn", "local_date", "local_time", "pos_entry_mode", "merchant_name", "merchant_city", "authorization_type", "verification", "sensitive", "forwarded_at")
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
    ACQUIRER_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_CODE_FIELD_NUMBER: _ClassVar[int]
    CARD_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    STAN_FIELD_NUMBER: _ClassVar[int]
    RRN_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DATE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_TIME_FIELD_NUMBER: _ClassVar[int]
    POS_ENTRY_MODE_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_CITY_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_AT_FIELD_NUMBER: _ClassVar[int]
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
    acquirer_id: str
    processing_code: str
    card_expiry: str
    stan: str
    rrn: str
    local_date: str
    local_time: str
    pos_entry_mode: str
    merchant_name: str
    merchant_city: str
    authorization_type: AuthorizationType
    verification: Verification
    sensitive: SensitiveData
    forwarded_at: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., pan: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., mcc: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., merchant_id: _Optional[str] = ..., terminal_id: _Optional[str] = ..., merchant_country: _Optional[str] = ..., pin_verified: _Optional[bool] = ..., cardholder_authenticated: _Optional[bool] = ..., transmitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acquirer_id: _Optional[str] = ..., processing_code: _Optional[str] = ..., card_expiry: _Optional[str] = ..., stan: _Optional[str] = ..., rrn: _Optional[str] = ..., local_date: _Optional[str] = ..., local_time: _Optional[str] = ..., pos_entry_mode: _Optional[str] = ..., merchant_name: _Optional[str] = ..., merchant_city: _Optional[str] = ..., authorization_type: _Optional[_Union[AuthorizationType, str]] = ..., verification: _Optional[_Union[Verification, _Mapping]] = ..., sensitive: _Optional[_Union[SensitiveData, _Mapping]] = ..., forwarded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("request_id", "decision", "response_code", "approval_code", "source", "pool", "standin_reason", "decision_id", "member", "rule", "available_balance_minor", "policy_version")
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
    AVAILABLE_BALANCE_MINOR_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
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
    available_balance_minor: int
    policy_version: int
    def __init__(self, request_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., response_code: _Optional[str] = ..., approval_code: _Optional[str] = ..., source: _Optional[_Union[Source, str]] = ..., pool: _Optional[str] = ..., standin_reason: _Optional[_Union[StandInReason, str]] = ..., decision_id: _Optional[str] = ..., member: _Optional[str] = ..., rule: _Optional[str] = ..., available_balance_minor: _Optional[int] = ..., policy_version: _Optional[int] = ...) -> None: ...

class ReverseRequest(_message.Message):
    __slots__ = ("acquirer_id", "reversal_id", "original_request_id", "pan", "final_amount_minor", "reason", "currency", "transmitted_at", "original_amount_minor")
    ACQUIRER_ID_FIELD_NUMBER: _ClassVar[int]
    REVERSAL_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    FINAL_AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TRANSMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    acquirer_id: str
    reversal_id: str
    original_request_id: str
    pan: str
    final_amount_minor: int
    reason: ReversalReason
    currency: str
    transmitted_at: _timestamp_pb2.Timestamp
    original_amount_minor: int
    def __init__(self, acquirer_id: _Optional[str] = ..., reversal_id: _Optional[str] = ..., original_request_id: _Optional[str] = ..., pan: _Optional[str] = ..., final_amount_minor: _Optional[int] = ..., reason: _Optional[_Union[ReversalReason, str]] = ..., currency: _Optional[str] = ..., transmitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., original_amount_minor: _Optional[int] = ...) -> None: ...

class ReverseResponse(_message.Message):
    __slots__ = ("reversal_id", "status", "response_code", "source")
    REVERSAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    reversal_id: str
    status: ReversalStatus
    response_code: str
    source: Source
    def __init__(self, reversal_id: _Optional[str] = ..., status: _Optional[_Union[ReversalStatus, str]] = ..., response_code: _Optional[str] = ..., source: _Optional[_Union[Source, str]] = ...) -> None: ...

class AcquirerAdvice(_message.Message):
    __slots__ = ("request", "kind", "approval_code")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_CODE_FIELD_NUMBER: _ClassVar[int]
    request: AuthorizeRequest
    kind: AcquirerAdviceKind
    approval_code: str
    def __init__(self, request: _Optional[_Union[AuthorizeRequest, _Mapping]] = ..., kind: _Optional[_Union[AcquirerAdviceKind, str]] = ..., approval_code: _Optional[str] = ...) -> None: ...

class StandInAdvice(_message.Message):
    __slots__ = ("decision_id", "request", "decision", "response_code", "approval_code", "reason", "rule", "decided_at", "gateway_instance", "answered_at", "origin", "policy_version")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    request: AuthorizeRequest
    decision: Decision
    response_code: str
    approval_code: str
    reason: StandInReason
    rule: str
    decided_at: _timestamp_pb2.Timestamp
    gateway_instance: str
    answered_at: _timestamp_pb2.Timestamp
    origin: AdviceOrigin
    policy_version: int
    def __init__(self, decision_id: _Optional[str] = ..., request: _Optional[_Union[AuthorizeRequest, _Mapping]] = ..., decision: _Optional[_Union[Decision, str]] = ..., response_code: _Optional[str] = ..., approval_code: _Optional[str] = ..., reason: _Optional[_Union[StandInReason, str]] = ..., rule: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gateway_instance: _Optional[str] = ..., answered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., origin: _Optional[_Union[AdviceOrigin, str]] = ..., policy_version: _Optional[int] = ...) -> None: ...

class AdviceAck(_message.Message):
    __slots__ = ("decision_id", "duplicate")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    duplicate: bool
    def __init__(self, decision_id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...
