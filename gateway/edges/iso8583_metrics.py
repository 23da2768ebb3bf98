"""What the ISO 8583 listener counts, and the instruments that export it (read at collection time).

    authgw.iso8583.messages         counter  {mti, response_code}  requests answered, by request MTI and
                                                                   field 39 of the reply ("none": no reply)
    authgw.iso8583.format_errors    counter  {answered}            frames that broke the format: answered
                                                                   30 ("true") or only logged ("false",
                                                                   MTI or keys unreadable)
    authgw.iso8583.connections      gauge                          acquirer connections open now
    authgw.iso8583.refused          counter  {reason}              connections closed at accept
                                                                   (max_connections)

Authorizations and reversals through the listener are also in authgw.decisions, .refusals and
.reversals, like those of the gRPC port; denied field 32 in authgw.access.denied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

__all__ = ["Iso8583Counters"]


class Iso8583Counters:
    """Plain counters the listener adds to on the event loop; exported by `observe`."""

    def __init__(self) -> None:
        self.messages: Counter[tuple[str, str]] = Counter()
        self.format_errors: Counter[bool] = Counter()
        self.refused: Counter[str] = Counter()
        self.connections = 0

    def observe(self, meter: Meter) -> None:
        """Register the instruments (callbacks run in the metric reader's thread)."""
        meter.create_observable_counter(
            "authgw.iso8583.messages",
            [self._messages],
            unit="{message}",
            description="ISO 8583 requests answered",
        )
        meter.create_observable_counter(
            "authgw.iso8583.format_errors",
            [self._format_errors],
            unit="{frame}",
            description="ISO 8583 frames that broke the format",
        )
        meter.create_observable_counter(
            "authgw.iso8583.refused", [self._refused], unit="{connection}", description="Connections refused"
        )
        meter.create_observable_gauge(
            "authgw.iso8583.connections",
            [self._connections],
            unit="{connection}",
            description="ISO 8583 acquirer connections open",
        )

    def _messages(self, options: CallbackOptions) -> Iterable[Observation]:
        for (mti, code), count in list(dict(self.messages).items()):
            yield Observation(count, {"mti": mti, "response_code": code})

    def _format_errors(self, options: CallbackOptions) -> Iterable[Observation]:
        for answered, count in list(dict(self.format_errors).items()):
            yield Observation(count, {"answered": "true" if answered else "false"})

    def _refused(self, options: CallbackOptions) -> Iterable[Observation]:
        for reason, count in list(dict(self.refused).items()):
            yield Observation(count, {"reason": reason})

    def _connections(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.connections)
