"""Errors of the gateway package.

    GatewayError                  root: anything the gateway raises on purpose
    ├── InvalidRequest            an AuthorizeRequest field breaks a rule (names field, rule)
    └── ListenError               a listening address cannot be bound (names it)

    authgw.config.ConfigError     a config file is wrong (names file, key, problem, fix): the one
                                  config error of every package, re-exported here

Expected failures of issuer attempts are not exceptions: they are values
(`AttemptFailure` in `gateway.attempt`), because failing over is the normal path.
Only the servicer edge maps these errors to gRPC status codes.
"""

from __future__ import annotations

from authgw.config import ConfigError

__all__ = ["ConfigError", "GatewayError", "InvalidRequest", "ListenError"]


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
