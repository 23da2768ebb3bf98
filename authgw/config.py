"""The one reader of authgw's TOML files: typed values at load, errors that name file, key and fix.

    root = read_toml(Path("gateway.toml"))
    routing = root.table("routing")
    routing.check_known(["deadline", "attempt_timeout"])
    deadline = routing.duration("deadline", timedelta(seconds=2), maximum=timedelta(minutes=1))

Every package parses its own section with a `Section` (the gateway its routing, stand-in
its policy, observability its telemetry); the gateway's loader composes them, so
`authgw serve`, `authgw settle` and every operator command read one file the same way.

Durations are written one way everywhere: a string with a unit, `"150ms"`, `"2s"`,
`"5m"`, `"48h"`, `"7d"` (a decimal number is fine: `"1.5s"`), and are `timedelta`
once loaded. A key written the old way (`deadline_ms = 2000`) is refused with the
new spelling as its fix.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

__all__ = ["ConfigError", "Section", "format_duration", "parse_duration", "read_toml"]

_DURATION = re.compile(r"(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|h|d)")
_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_OLD_SUFFIXES = ("_ms", "_s", "_hours")


class ConfigError(Exception):
    """A configuration value is wrong: names the file, the dotted key, the problem and the fix."""

    def __init__(self, file: str, key: str, problem: str, fix: str = "") -> None:
        self.file = file
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"{file}: {key}: {problem}" + (f"; fix: {fix}" if fix else ""))


def parse_duration(text: str) -> timedelta | None:
    """`"150ms"`, `"2s"`, `"5m"`, `"48h"`, `"7d"` as a timedelta; None when it is not one."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return None
    return float(match["value"]) * _UNITS[match["unit"]]


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of `value` in the config's duration syntax."""
    ms = value / timedelta(milliseconds=1)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{int(ms // size)}{unit}"
    return f"{ms:g}ms"


def read_toml(path: Path, error: type[ConfigError] = ConfigError) -> Section:
    """The whole file as its root Section (`error` when unreadable or not TOML)."""
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError as exc:
        raise error(str(path), "-", "file not found", "check the path") from exc
    except OSError as exc:
        raise error(str(path), "-", f"cannot read the file ({exc.strerror})", "check the path") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(str(path), "-", f"not valid TOML ({exc})", "fix the syntax") from exc
    return Section(str(path), "", document, error)


class Section:
    """One TOML table of a config file, read with validation."""

    def __init__(
        self,
        file: str,
        prefix: str,
        table: Mapping[str, object],
        error: type[ConfigError] = ConfigError,
    ) -> None:
        """Args:
        error: the ConfigError subclass raised (a package may name a part of its config, e.g.
            stand-in's PolicyError); sub-tables raise the same.
        """
        self.file = file
        self.prefix = prefix
        self.raw = table
        self._error = error

    @property
    def base(self) -> Path:
        """The directory relative paths in this file are relative to."""
        return Path(self.file).parent

    def key(self, name: str) -> str:
        """The dotted key of `name` in this table."""
        if not name:
            return self.prefix or "-"
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str, fix: str = "") -> NoReturn:
        raise self._error(self.file, self.key(name), problem, fix)

    def check_known(self, names: Iterable[str]) -> None:
        """Refuse keys this table does not define (a typo would otherwise be silently ignored)."""
        known = set(names)
        for name in self.raw:
            if name in known:
                continue
            old = next((s for s in _OLD_SUFFIXES if name.endswith(s)), None)
            new = name.removesuffix(old) if old is not None else ""
            if new in known and new not in self.raw:
                self.fail(
                    name, "durations are written with their unit", f'write {new} = "2s" (ms, s, m, h, d)'
                )
            self.fail(name, "unknown key", f"remove it or use one of: {', '.join(sorted(known))}")

    def has(self, name: str) -> bool:
        return name in self.raw

    def names(self) -> Iterator[str]:
        return iter(self.raw)

    def table(self, name: str) -> Section:
        """The sub-table `name` (empty when absent)."""
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            self.fail(
                name, f"expected a table, got {type(value).__name__}", f"write it as [{self.key(name)}]"
            )
        return Section(self.file, self.key(name), value, self._error)

    def tables(self, name: str) -> list[Section]:
        """The array of tables `name` ([[name]] in the file; empty when absent)."""
        value = self.raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(name, "expected an array of tables", f"write each as [[{self.key(name)}]]")
        return [Section(self.file, self.key(f"{name}[{i}]"), v, self._error) for i, v in enumerate(value)]

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"expected an integer, got {value!r}", f"write a whole number >= {minimum}")
        self._in_range(name, value, minimum, maximum)
        return value

    def number(self, name: str, default: float, *, minimum: float, maximum: float | None = None) -> float:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(name, f"expected a number, got {value!r}", f"write a number >= {minimum}")
        self._in_range(name, value, minimum, maximum)
        return float(value)

    def share(self, name: str, default: float) -> float:
        """A number between 0 and 1."""
        return self.number(name, default, minimum=0.0, maximum=1.0)

    def _in_range(self, name: str, value: float, minimum: float, maximum: float | None) -> None:
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.fail(name, f"{value} is out of range", f"use a value {bound}")

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

    def duration(
        self,
        name: str,
        default: timedelta,
        *,
        minimum: timedelta = timedelta(0),
        maximum: timedelta | None = None,
    ) -> timedelta:
        """A duration written with its unit ("150ms", "2s", "5m", "48h", "7d")."""
        value = self.raw.get(name)
        if value is None:
            return default
        parsed = parse_duration(value) if isinstance(value, str) else None
        if parsed is None:
            self.fail(
                name, f"expected a duration, got {value!r}", 'write a number and a unit: "150ms", "2s", "48h"'
            )
        if parsed < minimum or (maximum is not None and parsed > maximum):
            bound = f"at least {format_duration(minimum)}"
            if maximum is not None:
                bound = f"between {format_duration(minimum)} and {format_duration(maximum)}"
            self.fail(name, f"{value} is out of range", f"use a duration {bound}")
        return parsed

    def path(self, name: str, default: str = "") -> Path | None:
        """A file path; relative paths are relative to this file's directory. None when absent."""
        value = self.string(name, default)
        if not value:
            return None
        path = Path(value)
        return path if path.is_absolute() else (self.base / path).resolve()
