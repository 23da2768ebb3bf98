"""How the Authorization service's messages are decoded: bad bytes are the caller's error, not ours.

grpc's generated registration decodes with `Message.FromString`; bytes that are not a
message make grpc answer UNKNOWN ("Unexpected DecodeError") before any code of ours runs.
Here the deserializer catches that and hands the servicer an `Undecodable` instead, which
the servicer answers INVALID_ARGUMENT. Fields this version of the contract does not know
are dropped at decoding: they are never forwarded to an issuer. Messages above the
configured size never reach Python: grpc answers RESOURCE_EXHAUSTED itself
(`grpc.max_receive_message_length`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from authgw.v1 import authorization_pb2 as pb

__all__ = ["SERVICE", "Undecodable", "add_authorization_service"]

SERVICE = "authgw.v1.Authorization"
M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What the servicer receives instead of a message whose bytes do not decode."""

    what: str

    def problem(self) -> str:
        return f"request: not a valid {self.what} (protobuf bytes do not decode)"


def _decoder(cls: type[M]) -> Callable[[bytes], M | Undecodable]:
    name = cls.DESCRIPTOR.full_name

    def decode(data: bytes) -> M | Undecodable:
        message = cls()
        try:
            message.ParseFromString(data)
        except (DecodeError, ValueError, RuntimeError):  # RuntimeError: recursion limits in upb
            return Undecodable(name)
        message.DiscardUnknownFields()  # never forwarded to an issuer
        return message

    return decode


def _encode(message: Message) -> bytes:
    return message.SerializeToString()


def add_authorization_service(servicer: Any, server: grpc.aio.Server) -> None:
    """Register authgw.v1.Authorization with the safe decoders above."""
    requests: dict[str, type[Message]] = {
        "Authorize": pb.AuthorizeRequest,
        "Reverse": pb.ReverseRequest,
        "Advise": pb.AcquirerAdvice,
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name), request_deserializer=_decoder(request), response_serializer=_encode
        )
        for name, request in requests.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
