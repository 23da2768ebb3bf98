"""The gateway's view of etcd: one range read of /authgw/, then a watch from the next revision.

etcd is a hint, not the truth: when it is unreachable the watcher keeps the
last membership it saw (or the caller's seed on a cold start), marks the
snapshot `etcd_connected=False` and retries with backoff; it never empties
the pools because etcd went silent. When the stream breaks it re-watches from
the last applied revision + 1, so nothing that happened meanwhile is missed;
if etcd has compacted that history it reads the whole prefix again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from opentelemetry import trace
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from authgw.tasks import cancel_and_wait
from health.errors import EtcdError, EtcdUnavailable, RevisionCompacted
from health.etcd import EtcdClient, EventKind, WatchEvent
from health.keys import DEFAULT_ROOT, KeyLayout
from health.membership import Listeners, Membership, MembershipListener

__all__ = ["MembershipWatcher"]

log = logging.getLogger(__name__)

# A watch that breaks sooner than this after it was created counts as a failed attempt
# (backoff grows); one that lived longer is re-created at once.
_STABLE_STREAM_S = 1.0


class MembershipWatcher:
    """A MembershipSource that follows the authgw keys in etcd.

    Args:
        client: etcd client (owned by the caller; close the watcher first).
        seed: membership to serve until etcd first answers (static configuration).
        on_change: listener added at construction, as with add_listener().
        key_root: etcd key root (tests use their own).
        initial_sync_timeout_s: how long start() waits for the first etcd read.
        max_backoff_s: longest pause between reconnection attempts.
        tracer: given, each change is an `authgw.membership.change` span with one event per
            member registered or gone (its lease), pool drained or undrained, mode or etcd change.
    """

    def __init__(
        self,
        client: EtcdClient,
        *,
        seed: Membership | None = None,
        on_change: MembershipListener | None = None,
        key_root: str = DEFAULT_ROOT,
        initial_sync_timeout_s: float = 3.0,
        max_backoff_s: float = 2.0,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._client = client
        self._tracer = tracer
        self._layout = KeyLayout(key_root)
        self._initial_sync_timeout_s = initial_sync_timeout_s
        self._max_backoff_s = max_backoff_s
        self._snapshot = replace(seed or Membership(), revision=0, etcd_connected=False)
        self._entries: dict[str, bytes] = {}
        self._revision = 0  # last revision applied; 0 until the first range read
        self._must_reload = True
        self._listeners = Listeners()
        if on_change is not None:
            self._listeners.add(on_change)
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def snapshot(self) -> Membership:
        """The latest membership (the seed, or the last one seen, while etcd is away)."""
        return self._snapshot

    def add_listener(self, listener: MembershipListener) -> Callable[[], None]:
        """Call `listener(snapshot)` after each change of pools, mode, gateways or etcd_connected.

        Listeners run on the event loop, in registration order, and must not
        block; one that raises is logged and the others still run. A change
        of revision alone (keys outside the layout) does not call them.
        """
        return self._listeners.add(listener)

    async def start(self) -> None:
        """Start following etcd; returns after the first read attempt (success or not)."""
        if self._closed:
            raise RuntimeError("MembershipWatcher is closed")
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name=f"membership watcher {self._layout.prefix}")
        self._task.add_done_callback(_log_crash)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._initial_sync_timeout_s):
                await self._first_attempt.wait()

    async def close(self) -> None:
        """Stop following etcd (the last snapshot stays readable); safe to call twice."""
        self._closed = True
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def __aenter__(self) -> MembershipWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the loop ----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            # A fresh retry state per stream: a watch that ran for hours and broke is retried at
            # once; only failures to get back in grow the backoff.
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(EtcdError),
                wait=wait_exponential_jitter(multiplier=0.1, max=self._max_backoff_s, jitter=0.2),
                before_sleep=self._on_attempt_failed,
            )
            async for attempt in retrying:
                with attempt:
                    await self._sync_and_watch()

    async def _sync_and_watch(self) -> None:
        """Read (if needed) and watch until the stream breaks; raise EtcdError if etcd is unreachable."""
        if self._must_reload:
            result = await self._client.get_prefix(self._layout.prefix)
            self._entries = {kv.key: kv.value for kv in result.kvs}
            self._revision = result.revision
            self._must_reload = False
            self._publish(etcd_connected=True)
            log.info(
                "membership loaded from etcd at revision %d: %s",
                self._revision,
                _summary(self._snapshot),
            )
            self._first_attempt.set()
        else:
            # A key of our own prefix: under etcd auth a gateway may read nothing else.
            current = await self._client.revision(self._layout.mode())
            if current < self._revision:
                # Rebuilt or restored from a backup: watching from our revision would wait for
                # history that will never come (and skip what the new cluster holds).
                log.warning("etcd revision went back from %d to %d: reading again", self._revision, current)
                self._must_reload = True
                return
        loop = asyncio.get_running_loop()
        established: float | None = None
        try:
            async with self._client.watch_prefix(self._layout.prefix, self._revision + 1) as events:
                established = loop.time()
                if not self._snapshot.etcd_connected:
                    log.info("etcd reachable again: watching from revision %d", self._revision + 1)
                    self._publish(etcd_connected=True)
                async for event in events:
                    self._apply(event)
        except RevisionCompacted as exc:
            log.warning("missed history was compacted (%s): reading the whole membership again", exc)
            self._must_reload = True
        except EtcdUnavailable as exc:
            if established is None or loop.time() - established < _STABLE_STREAM_S:
                raise  # not (or hardly) connected: back off before the next attempt
            # A stream that had been up for a while broke: retry at once, with a fresh backoff.
            log.info("membership watch broke at revision %d: %s", self._revision, exc)

    def _apply(self, event: WatchEvent) -> None:
        if event.kind is EventKind.PUT:
            self._entries[event.key] = event.value
        else:
            self._entries.pop(event.key, None)
        self._revision = max(self._revision, event.mod_revision)
        self._publish(etcd_connected=True)

    def _publish(self, *, etcd_connected: bool) -> None:
        previous = self._snapshot
        if self._revision == 0:  # never read etcd: keep serving the seed
            current = replace(previous, etcd_connected=etcd_connected)
        else:
            current = self._layout.fold(self._entries, revision=self._revision, etcd_connected=etcd_connected)
        self._snapshot = current
        if not previous.same_content(current):
            log.debug("membership changed at revision %d: %s", current.revision, _summary(current))
            if self._tracer is not None:
                _trace_change(self._tracer, previous, current)
            self._listeners.notify(current)

    def _on_attempt_failed(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if self._snapshot.etcd_connected or not self._first_attempt.is_set():
            what = "keeping the last membership" if self._revision else "using the seed membership"
            log.warning("etcd unreachable, %s (revision %d): %s", what, self._revision, exc)
        self._publish(etcd_connected=False)
        self._first_attempt.set()


def _changes(before: Membership, after: Membership) -> list[tuple[str, dict[str, str]]]:
    """Span events for what differs: members (their leases), drain flags, mode, etcd reachability."""
    events: list[tuple[str, dict[str, str]]] = []
    for name in sorted(before.pools.keys() | after.pools.keys()):
        old, new = before.pool(name), after.pool(name)
        for member in sorted(new.members.keys() - old.members.keys()):
            events.append(("member.registered", {"authgw.pool": name, "authgw.member": member}))
        for member in sorted(old.members.keys() - new.members.keys()):
            events.append(("member.gone", {"authgw.pool": name, "authgw.member": member}))
        if old.drained != new.drained:
            events.append(("pool.drained" if new.drained else "pool.undrained", {"authgw.pool": name}))
    if before.mode != after.mode:
        events.append(("mode.changed", {"authgw.mode": str(after.mode)}))
    if before.etcd_connected != after.etcd_connected:
        events.append(("etcd.connected" if after.etcd_connected else "etcd.unreachable", {}))
    return events


def _trace_change(tracer: trace.Tracer, before: Membership, after: Membership) -> None:
    attrs = {"authgw.membership.revision": after.revision, "authgw.etcd_connected": after.etcd_connected}
    with tracer.start_as_current_span("authgw.membership.change", attributes=attrs) as span:
        for name, event_attrs in _changes(before, after):
            span.add_event(name, event_attrs)


def _summary(membership: Membership) -> str:
    pools = ", ".join(
        f"{name}={len(view.members)}{' drained' if view.drained else ''}"
        for name, view in membership.pools.items()
    )
    return f"pools [{pools}], mode {membership.mode}, {len(membership.gateways)} gateways"


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("membership watcher crashed", exc_info=task.exception())
