"""Errors of the gateway package.

    GatewayError                  root: anything the gateway raises on purpose
    ├── ConfigError               the config file is wrong (names file, key, fix)
    └── InvalidRequest            an AuthorizeRequest field breaks a rule (names field, rule)

Expected failures of issuer attempts are not exceptions: they are values
(`AttemptFailure` in `gateway.attempt`), because failing over is the normal path.
Only the servicer edge maps these errors to gRPC status codes.
"""

from __future__ import annotations

__all__ = ["ConfigError", "GatewayError", "InvalidRequest"]


class GatewayError(Exception):
    """Root of the gateway's deliberate errors."""


class ConfigError(GatewayError):
    """The configuration is invalid; the message names the file, the key and the fix."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: {key}: {problem}")


class InvalidRequest(GatewayError):
    """A request field breaks a validation rule; never reaches an issuer."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")
