"""What the PromQL in deploy/ reads, and whether a gateway's scrape has it.

Not a PromQL parser: enough of one for the queries of the alert rules and the
dashboard. A query is read for its selectors (metric name and label matchers),
the labels it groups or joins by (`by`, `without`, `on`, `ignoring`,
`group_left`, `group_right`) and the labels its legend names; a scrape (the
Prometheus text format) is read into metric -> label -> values. `problems`
then says what a query reads that the scrape does not have.

The rules file is YAML, read here line by line for its `expr:` values (the
venv has no YAML library); tests compare the count with promtool's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TARGET_LABELS",
    "Query",
    "Scrape",
    "dashboard_queries",
    "panels",
    "problems",
    "read",
    "rule_queries",
]

# Added by Prometheus to every series it scrapes: never in the exposition itself.
TARGET_LABELS = frozenset({"instance", "job"})

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "atan2"}
)
_STRING = r'"(?:[^"\\]|\\.)*"'
_BRACES = re.compile(r"\{((?:[^{}\"]|" + _STRING + r")*)\}")
_NAME_BEFORE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(" + _STRING + ")")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_RANGE = re.compile(r"\[[^\]]*\]")
_LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_LITERAL_ALTERNATIVES = re.compile(r"[a-zA-Z0-9_]+(?:\|[a-zA-Z0-9_]+)*")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...] = ()


@dataclass(frozen=True)
class Query:
    """One query and where it comes from (a rule, a panel, a variable)."""

    where: str
    expr: str
    legend: str = ""
    selectors: tuple[Selector, ...] = field(init=False)
    grouping: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        selectors, grouping = _read(self.expr)
        object.__setattr__(self, "selectors", selectors)
        object.__setattr__(self, "grouping", grouping | set(_LEGEND.findall(self.legend)))

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


def _read(expr: str) -> tuple[tuple[Selector, ...], set[str]]:
    text = _RANGE.sub("", expr)  # [5m], [$__rate_interval], subqueries: no names in there
    grouping = {
        label.strip() for group in _GROUPING.findall(text) for label in group.split(",") if label.strip()
    }
    text = _GROUPING.sub(" ", text)
    selectors: list[Selector] = []
    rest: list[str] = []
    pos = 0
    for braces in _BRACES.finditer(text):
        before = text[pos : braces.start()]
        name = _NAME_BEFORE.search(before)
        matchers = tuple(
            Matcher(label, op, json.loads(value)) for label, op, value in _MATCHER.findall(braces.group(1))
        )
        metric = name.group(1) if name else ""
        if name:
            before = before[: name.start()]
        named = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
        selectors.append(Selector(metric or (named[0] if named else ""), matchers))
        rest.append(before)
        pos = braces.end()
    rest.append(text[pos:])
    bare = re.sub(_STRING, " ", " ".join(rest))
    selectors += [Selector(name) for name in _IDENT.findall(bare) if name not in _KEYWORDS]
    return tuple(selectors), grouping


@dataclass
class Scrape:
    """metric name -> label -> values seen, from a Prometheus text exposition."""

    series: dict[str, dict[str, set[str]]]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        series: dict[str, dict[str, set[str]]] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s", line)
            if match is None:
                raise ValueError(f"not a sample line: {line!r}")
            labels = series.setdefault(match.group(1), {})
            for label, _, value in _MATCHER.findall(match.group(2) or ""):
                labels.setdefault(label, set()).add(json.loads(value))
        return cls(series)


def problems(
    query: Query, scrape: Scrape, *, not_exported: Iterable[str] = (), recorded: Iterable[str] = ()
) -> list[str]:
    """What `query` reads that `scrape` lacks: names, matcher labels and literal values, grouping labels.

    Args:
        not_exported: metric names the gateway does not export, deliberately (checked elsewhere).
        recorded: names made by recording rules.
    """
    skipped = set(not_exported) | set(recorded)
    out: list[str] = []
    for selector in query.selectors:
        if selector.metric in skipped:
            continue
        labels = scrape.series.get(selector.metric)
        if labels is None:
            out.append(f"{query.where}: metric {selector.metric!r} is not in the scrape")
            continue
        for m in selector.matchers:
            if m.label in TARGET_LABELS or m.label == "__name__":
                continue
            values = labels.get(m.label)
            if values is None:
                out.append(f"{query.where}: {selector.metric} has no label {m.label!r}")
            elif "$" not in m.value and m.op in ("=", "=~") and _LITERAL_ALTERNATIVES.fullmatch(m.value):
                out += [
                    f"{query.where}: {selector.metric}{{{m.label}={v!r}}} is not in the scrape"
                    for v in m.value.split("|")
                    if v not in values
                ]
    if query.metrics & skipped:
        return out  # a label it groups by may live on a metric that is not scraped here
    known = set(TARGET_LABELS)
    for metric in query.metrics:
        known |= scrape.series.get(metric, {}).keys()
    out += [
        f"{query.where}: no metric of the query has label {label!r}"
        for label in sorted(query.grouping - known)
    ]
    return out


def rule_queries(path: Path) -> Iterator[tuple[str, str, Query]]:
    """(kind, name, query) per rule of a Prometheus rules file: kind is "alert" or "record"."""
    lines = path.read_text().splitlines()
    kind = name = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        head = re.match(r"\s*- (alert|record): (\S+)", line)
        if head:
            kind, name = head.groups()
        expr = re.match(r"(\s*)expr: (.*)$", line)
        if expr:
            indent, value = len(expr.group(1)), expr.group(2).strip()
            if value in ("|", ">", "|-", ">-"):
                block: list[str] = []
                while i + 1 < len(lines) and (not lines[i + 1].strip() or _indent(lines[i + 1]) > indent):
                    i += 1
                    block.append(lines[i].strip())
                value = "\n".join(block).strip()
            yield kind, name, Query(f"{kind} {name}", value)
        i += 1


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    found: list[dict[str, Any]] = list(dashboard.get("panels", []))
    for panel in found:
        found += panel.get("panels", [])
    return found


def dashboard_queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    """Every panel target's expression (with its legend) and every query variable's query."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Query(
                f"panel {panel['title']!r} {target['refId']}", target["expr"], target.get("legendFormat", "")
            )
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue
        values = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)", variable["definition"])
        assert values is not None, f"variable {variable['name']}: only label_values(selector, label) is read"
        yield Query(f"variable {variable['name']!r}", values.group(1), "{{" + values.group(2) + "}}")


def read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data
