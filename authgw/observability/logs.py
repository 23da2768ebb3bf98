"""Logging of `authgw serve`: one JSON object per line (default), or plain text on request.

Each JSON line holds time (UTC, ISO 8601), level, logger, message, and trace_id /
span_id when a valid span is current, so a log line joins its trace in the
collector. The gateway never logs per request on the hot path; what it logs
names cards by their last four digits at most, and as a last guard every run of
12-19 digits in a formatted line is masked to its last four (a PAN that slipped
into an exception text or a foreign error message), and so is a card number
written in groups ("4111 1111 1111 1111", "3782-822463-10005": groups of 4-6
digits split by a space or a dash; stream ids and dates do not look like that).
"""

from __future__ import annotations

import enum
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

from opentelemetry import trace

__all__ = ["JsonFormatter", "LogFormat", "configure_logging", "mask_card_numbers"]

_DIGIT_RUN = re.compile(r"\d{12,19}|(?<!\d)\d{4,6}(?:[ -]\d{3,6}){2,4}(?!\d)")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class LogFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"


def mask_card_numbers(text: str) -> str:
    """Replace each run of 12-19 digits or card number in groups (a possible PAN) by its last four."""
    return _DIGIT_RUN.sub(_last_four, text)


def _last_four(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group())
    return f"…{digits[-4:]}" if 12 <= len(digits) <= 19 else m.group()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the current span's ids when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_card_numbers(record.getMessage()),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = f"{ctx.trace_id:032x}"
            entry["span_id"] = f"{ctx.span_id:016x}"
        if record.exc_info:
            entry["exception"] = mask_card_numbers(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class _MaskingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_card_numbers(super().format(record))


def configure_logging(fmt: LogFormat, level: str, stream: TextIO = sys.stderr) -> None:
    """Send the root logger's records to `stream` in `fmt`, replacing any handler set before."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.JSON else _MaskingTextFormatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
