"""Errors of the observability package.

    ObservabilityError            root: anything this package raises on purpose
    └── TelemetrySettingError     a telemetry setting (OTEL_* variable or config key) is not
                                  acceptable; the message names it

Anything else escaping this package is a bug.
"""

from __future__ import annotations

__all__ = ["ObservabilityError", "TelemetrySettingError"]


class ObservabilityError(Exception):
    """Root of the observability package's deliberate errors."""


class TelemetrySettingError(ObservabilityError):
    """A telemetry setting (environment variable or config key) is not acceptable; names it."""
