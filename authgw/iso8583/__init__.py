"""The ISO 8583 wire layer: framing (channel), message format (spec, message) and request matching (mux).

The ISO 8583 contract of authgw, as `authgw.v1` is the gRPC one: the gateway's acquirer
listener and issuer pool members, the health agent's echo probe and the issuer simulator
all speak it through this package. It depends on the standard library, pyiso8583 and
pycountry only. The wire format is described field by field in docs/iso8583.md.
"""

from __future__ import annotations

from authgw.iso8583.channel import Channel, open_channel
from authgw.iso8583.elements import (
    AVAILABLE_BALANCE,
    AdditionalAmount,
    MerchantLocation,
    OriginalData,
    available_balance,
    currency_alpha3,
    currency_numeric,
    find_available_balance,
    format_additional_amounts,
    format_amount,
    local_date_time,
    parse_additional_amounts,
    parse_amount,
    parse_final_amount,
    replacement_amounts,
    transmission_time,
)
from authgw.iso8583.errors import (
    ConfigError,
    ConnectionClosed,
    FormatError,
    FramingError,
    Iso8583Error,
    MatchTimeout,
    MuxError,
)
from authgw.iso8583.framing import Frame, Framing, LengthHeader, Tpdu, encode_frame, read_frame, write_frame
from authgw.iso8583.message import (
    APPROVED,
    FORMAT_ERROR,
    SYSTEM_MALFUNCTION,
    MatchKey,
    Message,
    NetworkCode,
    StanSequence,
    build_reply,
    error_match_key,
    network_request,
    reply_to_format_error,
)
from authgw.iso8583.mux import EchoConfig, Mux
from authgw.iso8583.server import FormatErrorHandler, RequestHandler, ServerConnection, answer_format_error
from authgw.iso8583.spec import FIELDS, BitmapEncoding, FieldDef, Kind, Spec

__all__ = [
    "APPROVED",
    "AVAILABLE_BALANCE",
    "FIELDS",
    "FORMAT_ERROR",
    "SYSTEM_MALFUNCTION",
    "AdditionalAmount",
    "BitmapEncoding",
    "Channel",
    "ConfigError",
    "ConnectionClosed",
    "EchoConfig",
    "FieldDef",
    "FormatError",
    "FormatErrorHandler",
    "Frame",
    "Framing",
    "FramingError",
    "Iso8583Error",
    "Kind",
    "LengthHeader",
    "MatchKey",
    "MatchTimeout",
    "MerchantLocation",
    "Message",
    "Mux",
    "MuxError",
    "NetworkCode",
    "OriginalData",
    "RequestHandler",
    "ServerConnection",
    "Spec",
    "StanSequence",
    "Tpdu",
    "answer_format_error",
    "available_balance",
    "build_reply",
    "currency_alpha3",
    "currency_numeric",
    "encode_frame",
    "error_match_key",
    "find_available_balance",
    "format_additional_amounts",
    "format_amount",
    "local_date_time",
    "network_request",
    "open_channel",
    "parse_additional_amounts",
    "parse_amount",
    "parse_final_amount",
    "read_frame",
    "replacement_amounts",
    "reply_to_format_error",
    "transmission_time",
    "write_frame",
]
