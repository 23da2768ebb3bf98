"""What `authgw top` shows of one gateway, computed from two scrapes of its Prometheus endpoint.

Everything here comes from series the gateway exports (gateway/metrics.py): the routing mode,
pools with their verdict, drain flag and members by state, answers per second by source and
response code, requests per second by edge, p99 over the interval, the journal as the gateway
samples it, settlement advices per second, and the stand-in exposure against its budget when the
gateway exports them (`authgw.standin.exposure`, `.exposure_budget`; None when it does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.top.rates import quantile, rates
from gateway.top.scrape import Scrape

__all__ = ["GatewayView", "PoolView", "gateway_view"]

_DURATION = "authgw_authorization_duration_milliseconds"
_STATES = ("healthy", "half_open", "ejected")


@dataclass(frozen=True)
class PoolView:
    """One pool as the gateway routes to it."""

    name: str
    verdict: str | None  # ok, failing, decline_storm (None: not exported)
    drained: bool
    members: dict[str, int]  # state -> members in it
    member_states: dict[str, str]  # member -> its state


@dataclass(frozen=True)
class GatewayView:
    """One gateway over one interval (`error` set: its endpoint could not be read)."""

    url: str
    instance: str
    error: str | None = None
    mode: str | None = None
    interval_s: float = 0.0
    pools: list[PoolView] = field(default_factory=list)
    answers: dict[tuple[str, str], float] = field(default_factory=dict)  # (source, code) -> per s
    requests: dict[str, float] = field(default_factory=dict)  # edge -> per s
    p99_ms: dict[str, float | None] = field(default_factory=dict)  # "all" and per source
    journal_depth: dict[str, float] = field(default_factory=dict)  # store -> entries
    journal_oldest_s: dict[str, float] = field(default_factory=dict)  # store -> age of the oldest
    settlement: dict[str, float] = field(default_factory=dict)  # outcome -> advices per s
    exposure: dict[str, float] = field(default_factory=dict)  # "window=1h ..." -> amount (minor units)
    exposure_budget: dict[str, float] = field(default_factory=dict)

    @property
    def answers_by_source(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (source, _), per_s in self.answers.items():
            out[source] = out.get(source, 0.0) + per_s
        return out


def _instance(scrape: Scrape) -> str:
    for labels, _ in scrape.series("target_info"):
        if "service_instance_id" in labels:
            return labels["service_instance_id"]
    return scrape.url


def _pools(cur: Scrape) -> list[PoolView]:
    names = {labels["pool"] for labels, _ in cur.series("authgw_pool_members") if "pool" in labels}
    names |= {labels["pool"] for labels, _ in cur.series("authgw_pool_verdict") if "pool" in labels}
    out = []
    for name in sorted(names):
        verdicts = [labels["verdict"] for labels, v in cur.series("authgw_pool_verdict", pool=name) if v == 1]
        members = {s: int(cur.value("authgw_pool_members", pool=name, state=s) or 0) for s in _STATES}
        states = {
            labels["member"]: labels["state"]
            for labels, v in cur.series("authgw_member_state", pool=name)
            if v == 1 and "member" in labels
        }
        drained = bool(cur.value("authgw_pool_drained", pool=name))
        out.append(
            PoolView(name, verdicts[0] if verdicts else None, drained, members, dict(sorted(states.items())))
        )
    return out


def _by(cur: Scrape, name: str, label: str) -> dict[str, float]:
    return {labels.get(label, ""): v for labels, v in cur.series(name)}


def _keyed(cur: Scrape, name: str) -> dict[str, float]:
    """Series of `name` by all their own labels ("window=1h currency=EUR"), the exporter's left out."""
    out = {}
    for labels, value in cur.series(name):
        own = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if not k.startswith("otel_"))
        out[own or "all"] = value
    return out


def gateway_view(prev: Scrape, cur: Scrape) -> GatewayView:
    """The view of one gateway between two of its scrapes."""
    if cur.error is not None or prev.error is not None:
        return GatewayView(cur.url, cur.url, error=cur.error or prev.error)
    p99 = {"all": quantile(prev, cur, 0.99, _DURATION)}
    sources = {labels.get("source", "") for labels, _ in cur.series(f"{_DURATION}_count")}
    p99 |= {s: quantile(prev, cur, 0.99, _DURATION, source=s) for s in sorted(sources)}
    return GatewayView(
        url=cur.url,
        instance=_instance(cur),
        mode=cur.label_of_one("authgw_routing_mode", "mode"),
        interval_s=cur.at - prev.at,
        pools=_pools(cur),
        answers={
            (k[0], k[1]): v
            for k, v in rates(prev, cur, "authgw_decisions_total", ("source", "response_code")).items()
        },
        requests={k[0]: v for k, v in rates(prev, cur, "authgw_requests_total", ("edge",)).items()},
        p99_ms=p99,
        journal_depth=_by(cur, "authgw_journal_depth", "store"),
        journal_oldest_s=_by(cur, "authgw_journal_oldest_age_seconds", "store"),
        settlement={
            k[0]: v for k, v in rates(prev, cur, "authgw_settlement_advices_total", ("outcome",)).items()
        },
        exposure=_keyed(cur, "authgw_standin_exposure"),
        exposure_budget=_keyed(cur, "authgw_standin_exposure_budget"),
    )
