"""Holding one etcd key on a lease of its own, kept alive by our own loop.

aetcd grants leases but never refreshes them. `LeasedKey` does, every
TTL/3, and owns the whole life of the key: write it on a fresh lease when
asked to hold it, re-create lease and key when etcd lost them (expiry during
an outage, a wiped cluster), revoke at once when asked to release (the key
vanishes for every watcher in the same instant) and retry that revoke if etcd
was unreachable. The health agent holds a pool member's key with it, the
gateway its own /authgw/gateways/<instance> key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from authgw.tasks import cancel_and_wait
from health.errors import EtcdError, EtcdPermissionDenied, LeaseNotFound
from health.etcd import EtcdClient

__all__ = ["LeasedKey"]

log = logging.getLogger(__name__)


class LeasedKey:
    """Keeps `key` = value() in etcd on its own lease while held.

    Args:
        client: etcd client (not closed by this object).
        key: the key to hold.
        value: builds the value at each (re-)registration, so it can carry a timestamp.
        ttl_s: lease TTL: how long the key outlives this process if it dies.
        refresh_interval_s: keep-alive period; TTL/3 by default, so two keep-alives may fail.
        retry_interval_s: delay between attempts while etcd is unreachable.
    """

    def __init__(
        self,
        client: EtcdClient,
        key: str,
        value: Callable[[], bytes],
        *,
        ttl_s: int = 3,
        refresh_interval_s: float | None = None,
        retry_interval_s: float | None = None,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"lease ttl_s must be >= 1, got {ttl_s}")
        self._client = client
        self._key = key
        self._value = value
        self._ttl_s = ttl_s
        self._refresh_s = refresh_interval_s if refresh_interval_s is not None else ttl_s / 3
        self._retry_s = retry_interval_s if retry_interval_s is not None else min(0.5, self._refresh_s)
        self._wanted = False
        self._lease: int | None = None
        self._held = False
        self._stale: list[int] = []  # leases to revoke once etcd answers again
        self._etcd_lost = False
        self._lock = asyncio.Lock()  # one etcd conversation at a time: the loop's or release()'s
        self._wake = asyncio.Event()
        self._held_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def key(self) -> str:
        return self._key

    @property
    def held(self) -> bool:
        """True once the key was written, until its lease is revoked or found lost."""
        return self._held

    @property
    def lease_id(self) -> int | None:
        return self._lease

    @property
    def etcd_connected(self) -> bool:
        """False since the last failed etcd call, until the next successful one."""
        return not self._etcd_lost

    async def start(self) -> None:
        """Start the keep-alive loop (it registers as soon as hold() is called)."""
        if self._closed:
            raise RuntimeError(f"LeasedKey({self._key}) is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"lease {self._key}")
            self._task.add_done_callback(self._log_crash)

    def hold(self) -> None:
        """Ask for the key to be present; the loop writes it on a new lease without delay."""
        self._wanted = True
        self._wake.set()

    async def wait_held(self) -> None:
        """Return once the key has been written (wrap it in a timeout)."""
        await self._held_event.wait()

    async def release(self, reason: str) -> None:
        """Stop holding the key and revoke its lease now, so it leaves etcd at once."""
        async with self._lock:
            self._wanted = False
            if self._lease is not None:
                self._stale.append(self._lease)
                self._lease = None
            was_held = self._held
            self._set_held(False)
            try:
                await self._revoke_stale()
            except EtcdError as exc:
                self._note_etcd_lost(exc)
                if was_held:
                    log.warning(
                        "could not revoke %s (%s): %s; it expires within %ss",
                        self._key,
                        reason,
                        exc,
                        self._ttl_s,
                    )
                self._wake.set()  # the loop retries the revoke
                return
            if was_held:
                log.info("revoked %s (%s)", self._key, reason)

    async def close(self) -> None:
        """Stop the loop and revoke the lease; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.release("closing")

    async def __aenter__(self) -> LeasedKey:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the loop ----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            async with self._lock:
                delay = await self._step()
            if delay is None:
                await self._wake.wait()
            elif delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def _step(self) -> float | None:
        """Do one round of etcd work; return the delay before the next (None: until woken)."""
        try:
            await self._revoke_stale()
            if not self._wanted:
                return None
            if self._lease is None:
                self._lease = await self._client.grant_lease(self._ttl_s)
            if not self._held:
                await self._client.put(self._key, self._value(), lease=self._lease)
                self._set_held(True)
                log.info("registered %s (lease %x, ttl %ss)", self._key, self._lease, self._ttl_s)
            else:
                await self._client.refresh_lease(self._lease)
        except LeaseNotFound as exc:
            self._note_etcd_back()
            if self._held:
                log.warning("lease of %s lost (%s): registering again", self._key, exc)
            self._lease = None
            self._set_held(False)
            return 0.0
        except EtcdError as exc:
            self._note_etcd_lost(exc)
            return self._retry_s
        self._note_etcd_back()
        return self._refresh_s

    async def _revoke_stale(self) -> None:
        while self._stale:
            await self._client.revoke_lease(self._stale[0])
            self._stale.pop(0)
            self._note_etcd_back()

    def _set_held(self, held: bool) -> None:
        self._held = held
        if held:
            self._held_event.set()
        else:
            self._held_event.clear()

    def _note_etcd_lost(self, exc: EtcdError) -> None:
        if not self._etcd_lost:
            self._etcd_lost = True
            if isinstance(exc, EtcdPermissionDenied):  # a misconfiguration, not an outage: say so
                log.error("etcd refuses %s to this process (retrying): %s", self._key, exc)
            else:
                log.warning("etcd lost while holding %s: %s", self._key, exc)

    def _note_etcd_back(self) -> None:
        if self._etcd_lost:
            self._etcd_lost = False
            log.info("etcd back for %s", self._key)

    def _log_crash(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("lease loop of %s crashed", self._key, exc_info=task.exception())
