"""Traces during a chaos experiment: are the requests an operator needs to look at traced?

With `traces` on (an `Experiment` field; `python -m chaos.run NAME --traces` for any
experiment), the runner starts an OTLP receiver (`chaos.otlp_receiver`), every gateway exports
its traces there with tail sampling (`[telemetry] sampling = "tail"`: interesting traces kept
in full, 1 % of the rest) and Prometheus metrics on a port of its own, and the report adds:

- how many stand-in decisions the acquirers were told, and how many of them have a trace
  (a server span whose `authgw.decision.decision_id` is the answer's); the gateway's own 91s
  (source STAND_IN, decision id `gw-...`: no stand-in decision was made) are not counted;
- `authgw.traces.kept` / `authgw.traces.dropped` summed over the gateways (the bound's count);
- the criterion "every stand-in decision traced up to the bound": each decision has a trace,
  or was counted as dropped by the keep bound (`tail_max_kept_per_s`). The experiments set the
  bound above their rate, so the count of drops is 0 and every decision must have its trace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chaos.otlp_receiver import OtlpReceiver
from chaos.samples import Sample
from chaos.topology import Topology, TopologySpec
from gateway.top.scrape import fetch
from gateway.tracing import SERVER_SPAN

__all__ = ["KEPT_PER_S_BOUND", "TraceCount", "count_traces", "traced_spec"]

# Above the experiments' 300 requests/s: an outage makes every request interesting, and the
# experiment checks that none is lost below the bound.
KEPT_PER_S_BOUND = 1000
_EXPORT_WAIT_S = 15.0  # the batch processor exports every few seconds; gateways flush when stopped


def traced_spec(spec: TopologySpec, endpoint: str) -> TopologySpec:
    """`spec` with its gateways exporting tail-sampled traces to `endpoint` and Prometheus metrics."""
    extra = {section: dict(values) for section, values in spec.gateway_extra.items()}
    extra.setdefault("telemetry", {}).update(
        {
            "traces_exporter": "otlp",
            "otlp_endpoint": endpoint,
            "sampling": "tail",
            "tail_keep_ratio": 0.01,
            "tail_max_kept_per_s": KEPT_PER_S_BOUND,
        }
    )
    return dataclasses.replace(spec, gateway_extra=extra, metrics=True)


@dataclass(frozen=True, slots=True)
class TraceCount:
    standin_decisions: int  # distinct stand-in decision ids the acquirers were told
    traced: int  # of those, how many have a server span in the receiver
    kept: int  # authgw.traces.kept, summed over the gateways
    dropped: int  # authgw.traces.dropped, summed over the gateways
    spans: int  # spans received in all
    untraced_examples: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """Every stand-in decision is traced, or counted as dropped by the keep bound."""
        return self.standin_decisions - self.traced <= self.dropped

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"bound_per_s": KEPT_PER_S_BOUND}


GATEWAY_DECLINE_PREFIX = "gw-"  # gateway.fallback.decline_91: the gateway's own 91, no stand-in decision


def _standin_decisions(samples: Sequence[Sample]) -> set[str]:
    """Decision ids of the answers stand-in decided (not the gateway's own 91s, which it did not)."""
    return {
        a.decision_id
        for s in samples
        for a in s.answers
        if a.source == "STAND_IN" and a.decision_id and not a.decision_id.startswith(GATEWAY_DECLINE_PREFIX)
    }


def _traced_decisions(receiver: OtlpReceiver) -> set[str]:
    return {
        str(s.attributes.get("authgw.decision.decision_id", ""))
        for s in receiver.spans()
        if s.name == SERVER_SPAN
    }


def _scrape(urls: Sequence[str]) -> tuple[int, int]:
    """authgw.traces.kept and .dropped, each summed over the gateways (a failed scrape: ScrapeError)."""
    kept = dropped = 0.0
    for url in urls:
        scrape = fetch(url, timeout_s=5.0)
        if scrape.error is not None:
            raise ScrapeError(f"{url}: {scrape.error}")
        kept += scrape.value("authgw_traces_kept_total") or 0.0
        dropped += scrape.value("authgw_traces_dropped_total") or 0.0
    return int(kept), int(dropped)


class ScrapeError(RuntimeError):
    """A gateway's Prometheus endpoint could not be read."""


async def count_traces(topo: Topology, receiver: OtlpReceiver, samples: Sequence[Sample]) -> TraceCount:
    """Wait until the gateways' exports catch up (or a bound), then count; call before stopping them."""
    decisions = _standin_decisions(samples)
    deadline = time.monotonic() + _EXPORT_WAIT_S
    while not decisions <= _traced_decisions(receiver) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)  # the receiver has no "span arrived" event to wait on
    kept, dropped = await asyncio.to_thread(_scrape, topo.metrics_urls)
    untraced = sorted(decisions - _traced_decisions(receiver))
    return TraceCount(
        standin_decisions=len(decisions),
        traced=len(decisions) - len(untraced),
        kept=kept,
        dropped=dropped,
        spans=len(receiver.spans()),
        untraced_examples=tuple(untraced[:5]),
    )
