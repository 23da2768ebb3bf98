"""Typed reading of a TOML table whose errors name the file, the dotted key and the fix."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import NoReturn

from standin.errors import ConfigError

__all__ = ["Section"]


class Section:
    """One TOML table of a config file, read with validation."""

    def __init__(
        self,
        file: str,
        prefix: str,
        table: Mapping[str, object],
        error: type[ConfigError] = ConfigError,
    ) -> None:
        self.file = file
        self.prefix = prefix
        self.raw = table
        self._error = error

    def key(self, name: str) -> str:
        """The dotted key of `name` in this table."""
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str, fix: str) -> NoReturn:
        raise self._error(self.file, self.key(name), problem, fix)

    def check_known(self, names: Iterable[str]) -> None:
        """Refuse keys this table does not define (a typo would otherwise be silently ignored)."""
        known = set(names)
        for name in self.raw:
            if name not in known:
                self.fail(name, "unknown key", f"remove it or use one of: {', '.join(sorted(known))}")

    def table(self, name: str) -> Section:
        """The sub-table `name` (empty when absent)."""
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            self.fail(
                name, f"expected a table, got {type(value).__name__}", f"write it as [{self.key(name)}]"
            )
        return Section(self.file, self.key(name), value, self._error)

    def has(self, name: str) -> bool:
        return name in self.raw

    def names(self) -> Iterator[str]:
        return iter(self.raw)

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"expected an integer, got {value!r}", f"write a whole number >= {minimum}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.fail(name, f"{value} is out of range", f"use a value {bound}")
        return value

    def number(self, name: str, default: float, *, minimum: float, maximum: float | None = None) -> float:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(name, f"expected a number, got {value!r}", f"write a number >= {minimum}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.fail(name, f"{value} is out of range", f"use a value {bound}")
        return float(value)

    def string(self, name: str, default: str, *, pattern: str | None = None, fix: str = "") -> str:
        value = self.raw.get(name, default)
        if not isinstance(value, str):
            self.fail(name, f"expected a string, got {value!r}", fix or "quote the value")
        if pattern is not None and not re.fullmatch(pattern, value):
            self.fail(name, f"{value!r} is not valid", fix or f"match {pattern}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            self.fail(name, f"expected true or false, got {value!r}", "write true or false")
        return value

    def strings(self, name: str, default: Iterable[str]) -> tuple[str, ...]:
        value = self.raw.get(name, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(name, f"expected a list of strings, got {value!r}", 'write ["a", "b"]')
        return tuple(value)
