"""One read of a gateway's Prometheus endpoint: every sample, by metric name, with its labels.

The text is parsed by prometheus_client's own parser (the format the gateway's exporter writes).
A scrape that fails keeps the reason, so the view can say which gateway is down instead of
dropping it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Labels", "Scrape", "fetch", "parse"]

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Scrape:
    """The samples of one endpoint at one time (monotonic seconds), or why there are none."""

    url: str
    at: float
    samples: Mapping[str, tuple[tuple[Labels, float], ...]] = field(default_factory=dict)
    error: str | None = None

    def series(self, name: str, **match: str) -> Iterator[tuple[Labels, float]]:
        """Samples of `name` whose labels include `match`."""
        for labels, value in self.samples.get(name, ()):
            if all(labels.get(k) == v for k, v in match.items()):
                yield labels, value

    def value(self, name: str, **match: str) -> float | None:
        """The sum of the matching samples (None: no such series)."""
        values = [v for _, v in self.series(name, **match)]
        return sum(values) if values else None

    def label_of_one(self, name: str, label: str) -> str | None:
        """The `label` of the series of `name` whose value is 1 (a state gauge), if any."""
        return next((labels.get(label) for labels, v in self.series(name) if v == 1), None)


def parse(url: str, text: str, at: float) -> Scrape:
    """A Scrape of exposition `text`; ValueError (from the parser) if it is not one."""
    samples: dict[str, list[tuple[Labels, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return Scrape(url, at, {name: tuple(s) for name, s in samples.items()})


def fetch(url: str, timeout_s: float = 2.0) -> Scrape:
    """Read `url` now (blocking: call it from a thread); a failed read is a Scrape with its error."""
    at = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - the operator's URL
            text = response.read().decode()
        return parse(url, text, at)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return Scrape(url, at, error=f"{type(exc).__name__}: {exc}")
