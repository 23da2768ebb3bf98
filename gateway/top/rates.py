"""Rates and latency quantiles over the interval between two scrapes of one gateway.

    rates(prev, cur, name, by)        increase per second of counter `name`, grouped by labels `by`
    quantile(prev, cur, q, name)      the q-quantile of histogram `name` over the interval, from
                                      its bucket counts as Prometheus' histogram_quantile does:
                                      linear inside the bucket the rank falls in, the highest
                                      finite bound when it falls in +Inf

A counter lower in `cur` than in `prev` was reset (the gateway restarted): its value in `cur` is
the increase. An interval without observations has no quantile (None), never a 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gateway.top.scrape import Scrape

__all__ = ["increase", "quantile", "rates"]


def increase(before: float | None, after: float) -> float:
    """What a counter added between two reads (after a reset: all of `after`)."""
    if before is None or after < before:
        return after
    return after - before


def _grouped(
    scrape: Scrape, name: str, by: Sequence[str], match: dict[str, str]
) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for labels, value in scrape.series(name, **match):
        key = tuple(labels.get(label, "") for label in by)
        out[key] = out.get(key, 0.0) + value
    return out


def rates(
    prev: Scrape, cur: Scrape, name: str, by: Sequence[str] = (), **match: str
) -> dict[tuple[str, ...], float]:
    """Per-second increase of counter `name` from `prev` to `cur`, by the values of labels `by`."""
    elapsed = cur.at - prev.at
    if elapsed <= 0:
        return {}
    before = _grouped(prev, name, by, match)
    after = _grouped(cur, name, by, match)
    return {key: increase(before.get(key), value) / elapsed for key, value in after.items()}


def quantile(prev: Scrape, cur: Scrape, q: float, name: str, **match: str) -> float | None:
    """The q-quantile (0 < q < 1) of histogram `name` (its `_bucket` series) between the scrapes."""
    bucket = f"{name}_bucket"
    before = _grouped(prev, bucket, ("le",), match)
    after = _grouped(cur, bucket, ("le",), match)
    counts = sorted(
        ((float(le), increase(before.get((le,)), v)) for (le,), v in after.items()), key=lambda b: b[0]
    )
    if not counts or counts[-1][1] <= 0:
        return None
    rank = q * counts[-1][1]
    lower, below = 0.0, 0.0
    for upper, cumulative in counts:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower  # the highest finite bound: as far as the buckets can tell
            if cumulative == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower
