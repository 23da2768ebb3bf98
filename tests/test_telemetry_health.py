"""Lease and membership changes as spans: the health agent and the watcher against a real etcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chaos.processes import ManagedProcess
from health.agent import AgentConfig, HealthAgent
from health.etcd import Endpoint, EtcdClient
from health.watcher import MembershipWatcher
from tests.helpers import assert_eventually
from tests.test_health_support import HealthHost, unique_root


@pytest.fixture
async def host() -> AsyncIterator[HealthHost]:
    """A gRPC host answering Health/Check, whose status the test flips."""
    h = await HealthHost().start()
    yield h
    await h.stop()


def _events(spans: tuple[ReadableSpan, ...], name: str) -> list[tuple[str, dict[str, object]]]:
    return [(e.name, dict(e.attributes or {})) for s in spans if s.name == name for e in s.events]


async def test_lease_and_membership_changes_are_traced(etcd_server: ManagedProcess, host: HealthHost) -> None:
    """Host up then down: the agent traces transitions and lease, the watcher the member coming and going."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    root = unique_root()
    config = AgentConfig(
        pool="primary", member="h1", address=host.address, probe_interval_s=0.1, probe_timeout_s=0.1,
        fall=2, rise=2, key_root=root,
    )  # fmt: skip
    stop = asyncio.Event()
    async with (
        EtcdClient([Endpoint("127.0.0.1", etcd_server.port)], request_timeout_s=0.5) as client,
        MembershipWatcher(client, key_root=root, tracer=tracer) as watcher,
    ):
        agent = HealthAgent(client, config, tracer=tracer)
        task = asyncio.create_task(agent.run(stop))
        try:

            def member_is(present: bool) -> None:
                assert ("h1" in watcher.snapshot().pool("primary").members) is present

            await assert_eventually(lambda: member_is(True), timeout_s=5)
            await host.set_serving(False)
            await assert_eventually(lambda: member_is(False), timeout_s=5)

            def lease_released() -> None:
                names = [name for name, _ in _events(exporter.get_finished_spans(), "authgw.health.lease")]
                assert names[:2] == ["lease.registered", "lease.released"]

            await assert_eventually(lease_released, timeout_s=5)
        finally:
            stop.set()
            await task
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.index("authgw.health.host_up") < names.index("authgw.health.host_down")
    (down,) = [s for s in spans if s.name == "authgw.health.host_down"]
    assert down.attributes is not None
    assert (down.attributes["authgw.pool"], down.attributes["authgw.member"]) == ("primary", "h1")
    membership = _events(spans, "authgw.membership.change")
    member = {"authgw.pool": "primary", "authgw.member": "h1"}
    assert ("member.registered", member) in membership
    assert membership.index(("member.registered", member)) < membership.index(("member.gone", member))
