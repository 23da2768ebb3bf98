"""What makes two authorizations the same request: (acquirer_id, request_id) and their content.

The contract (DESIGN.md, "The money invariant"): a repeat with the same
content is the same request and gets the same answer; the same
(acquirer_id, request_id) with other content is a different request, refused
with ALREADY_EXISTS wherever that can be detected. Content is pan,
amount_minor, currency, mcc, merchant_id, terminal_id and channel;
transmitted_at is not content (a repeat is sent later). The issuer simulator
keys its books with `RequestKey`, and the oracle (`chaos.verify`) matches
what the acquirer sent to those books with the same function.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from authgw.v1 import authorization_pb2 as pb

__all__ = ["DIGEST_HEX", "RequestKey", "content_digest", "request_key"]

DIGEST_HEX = 16  # 64 bits of SHA-256: no collision among the few million requests of a run

_SEPARATOR = "\x1f"  # ASCII unit separator: cannot appear in validated fields, so joins are unambiguous


class RequestKey(NamedTuple):
    """One request: who sent it, its id, and the digest of its content."""

    acquirer_id: str
    request_id: str
    digest: str

    def __str__(self) -> str:
        return f"{self.acquirer_id}/{self.request_id}#{self.digest}"


def content_digest(request: pb.AuthorizeRequest) -> str:
    """First DIGEST_HEX hex digits of the SHA-256 of the request's content (not of transmitted_at)."""
    fields = (
        request.pan,
        str(request.amount_minor),
        request.currency,
        request.mcc,
        request.merchant_id,
        request.terminal_id,
        str(int(request.channel)),
    )
    return hashlib.sha256(_SEPARATOR.join(fields).encode()).hexdigest()[:DIGEST_HEX]


def request_key(request: pb.AuthorizeRequest) -> RequestKey:
    """The key of a request as the issuer books it and the oracle looks it up."""
    return RequestKey(request.acquirer_id, request.request_id, content_digest(request))
