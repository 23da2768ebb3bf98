"""Errors of the gateway package.

    GatewayError                  root: anything the gateway raises on purpose
    ├── InvalidRequest            an AuthorizeRequest field breaks a rule (names field, rule)
    ├── RequestRefused            a request id reused with other content (ALREADY_EXISTS / 94)
    ├── ReversalUnavailable       a reversal nothing could record and no issuer answered (UNAVAILABLE)
    ├── AdviceUnavailable         an acquirer advice nothing could record (UNAVAILABLE / 96: repeat it)
    ├── ListenError               a listening address cannot be bound (names it)
    └── PolicyStoreError          a stand-in policy step refused: self-approval, stale or unknown
                                  proposal, malformed record (gateway.policy_record, policy_store)

    authgw.config.ConfigError     a config file is wrong (names file, key, problem, fix): the one
                                  config error of every package, re-exported here

Expected failures of issuer attempts are not exceptions: they are values
(`AttemptFailure` in `gateway.attempt`), because failing over is the normal path.
Only the servicer edge maps these errors to gRPC status codes.
"""

from __future__ import annotations

from authgw.config import ConfigError

__all__ = [
    "AdviceUnavailable",
    "ConfigError",
    "GatewayError",
    "InvalidRequest",
    "ListenError",
    "RequestRefused",
    "ReversalUnavailable",
]


class GatewayError(Exception):
    """Root of the gateway's deliberate errors."""


class InvalidRequest(GatewayError):
    """A request field breaks a validation rule; never reaches an issuer."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class ListenError(GatewayError):
    """An address to listen on cannot be bound (in use, not local, no permission)."""


class RequestRefused(GatewayError):
    """(acquirer, request id) was used before for another transaction: refused, nothing counted."""

    def __init__(self, request_id: str, detail: str = "") -> None:
        self.request_id = request_id
        super().__init__(
            f"request_id {request_id!r}: already used by this acquirer for another transaction"
            + (f" ({detail})" if detail else "")
        )


class ReversalUnavailable(GatewayError):
    """No issuer answered a reversal and nothing could record it: the acquirer must repeat it."""


class AdviceUnavailable(GatewayError):
    """An acquirer advice was not recorded (no stand-in journal could take it): the acquirer repeats it."""
