"""The one boundary where aetcd, gRPC and timeout errors become `health.errors`.

`EtcdClient` (health.etcd) catches `FOREIGN_ERRORS` around every call and raises
`translate(...)` from them; no other module of the package sees a foreign error.
What a caller can act on decides the class: an outage (EtcdUnavailable: fail over,
retry, keep the last state), a refusal by etcd's authentication
(EtcdPermissionDenied, naming the request and our etcd user), a lost lease, a
compacted revision, or any other refusal (EtcdRequestFailed).
"""

from __future__ import annotations

import aetcd
import grpc

from health.endpoints import Endpoint
from health.errors import (
    EtcdError,
    EtcdPermissionDenied,
    EtcdRequestFailed,
    EtcdUnavailable,
    LeaseNotFound,
    RevisionCompacted,
)

__all__ = ["FOREIGN_ERRORS", "translate"]

_RETRYABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)
# etcd's answers when auth refuses a request: PERMISSION_DENIED for a user outside its roles,
# the others when no user could be established; a refused watch only has the text.
_AUTH_CODES = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})
_AUTH_DETAILS = ("permission denied", "user name is empty", "invalid auth token")
FOREIGN_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    aetcd.ClientError,
    grpc.RpcError,
    grpc.aio.UsageError,
)


def _grpc_code(exc: BaseException) -> grpc.StatusCode | None:
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, grpc.aio.AioRpcError):
            code: grpc.StatusCode = candidate.code()
            return code
    return None


def translate(exc: BaseException, what: str, endpoint: Endpoint, user: str | None) -> EtcdError:
    """Map one aetcd/gRPC/timeout error to our tree (the package's only translation point)."""
    if isinstance(exc, aetcd.RevisionCompactedError):
        return RevisionCompacted(int(exc.compacted_revision))
    if isinstance(exc, TimeoutError | aetcd.ConnectionTimeoutError | aetcd.WatchTimeoutError):
        return EtcdUnavailable(f"{what}: etcd {endpoint} did not answer in time")
    code = _grpc_code(exc)
    detail = str(exc) or type(exc).__name__
    if code is grpc.StatusCode.NOT_FOUND:
        return LeaseNotFound(f"{what}: {detail}")
    if code in _AUTH_CODES or any(text in detail for text in _AUTH_DETAILS):
        return EtcdPermissionDenied(f"{what}: {_denied(user)} on etcd {endpoint} ({detail})")
    if code in _RETRYABLE_CODES or isinstance(exc, aetcd.ConnectionFailedError | grpc.aio.UsageError):
        return EtcdUnavailable(f"{what}: etcd {endpoint} unavailable: {detail}{_tls_hint(detail, user)}")
    return EtcdRequestFailed(f"{what}: etcd {endpoint} refused: {detail}")


def _denied(user: str | None) -> str:
    if user is None:
        return "permission denied: etcd sees no user (plaintext, or a certificate without CN)"
    return (
        f"permission denied to etcd user {user!r} (our certificate's CN): its roles do not allow it"
        " (roles: `python -m health.admin etcd-auth`)"
    )


def _tls_hint(detail: str, user: str | None) -> str:
    """Say what a refused handshake most likely means; gRPC only says the connection failed."""
    lowered = detail.lower()
    if user is not None and any(mark in lowered for mark in ("handshake", "tsi_", "ssl")):
        return (
            " (TLS refused: etcd must trust the CA of our certificate, and our CA file must hold"
            " the CA of etcd's)"
        )
    if user is None and "socket closed" in lowered:
        return " (an etcd serving TLS closes plaintext connections: give a client certificate)"
    return ""
