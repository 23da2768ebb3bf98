"""Every gateway follows the live stand-in policy key and hands each new version to its engine.

    start()   read /authgw/standin/policy once (within the etcd deadline): present and valid →
              that version; absent → the file; etcd unreachable → the file, logged (the file
              is the fallback). Then a background task watches the key.
    watch     PUT → LivePolicy.offer (validated like the file; invalid → current kept, logged,
              counted); DELETE → back to the file. A broken watch is re-created from a fresh
              read after `retry_s`, so a version published while etcd was away is applied.
    close()   stops the task.

A new version reaches the engine within one watch event of its approval (milliseconds
when etcd is up): no restart, no decision half on the old and half on the new policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.policy_record import PolicyStoreError, parse_record
from health.errors import EtcdError
from health.etcd import EtcdClient, EventKind
from standin.policy_live import LivePolicy

__all__ = ["PolicyWatch"]

log = logging.getLogger("authgw.standin.policy")


class PolicyWatch:
    """Owns the task that keeps one engine's LivePolicy on the etcd key's latest valid version."""

    def __init__(self, client: EtcdClient, key: str, live: LivePolicy, *, retry_s: float = 1.0) -> None:
        self._client = client
        self.key = key
        self._live = live
        self._retry_s = retry_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Apply what etcd holds now (or keep the file), then follow the key."""
        revision = 0
        try:
            revision = await self._read()
        except EtcdError as exc:
            log.warning(
                "etcd unreachable at start, stand-in uses policy version %d (%s) until it answers: %s",
                self._live.version, self._live.current.source, exc,
            )  # fmt: skip
        self._task = asyncio.get_running_loop().create_task(self._follow(revision), name="standin-policy")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _read(self) -> int:
        """Apply the key's current value; return the revision the read reflects."""
        result = await self._client.get_prefix(self.key)
        kv = next((kv for kv in result.kvs if kv.key == self.key), None)
        if kv is None:
            self._live.withdraw(self.key)
        else:
            self._apply(kv.value)
        return result.revision

    def _apply(self, value: bytes) -> None:
        try:
            record = parse_record(value, self.key)
        except PolicyStoreError as exc:
            self._live.refuse(self.key, str(exc))
            return
        self._live.offer(record.policy, record.version, self.key)

    async def _follow(self, revision: int) -> None:
        while True:
            try:
                if revision == 0:
                    revision = await self._read()
                async with self._client.watch_prefix(self.key, revision + 1) as events:
                    async for event in events:
                        if event.key != self.key:
                            continue  # a longer key sharing the prefix
                        if event.kind is EventKind.DELETE:
                            self._live.withdraw(self.key)
                        else:
                            self._apply(event.value)
            except EtcdError as exc:
                log.warning("stand-in policy watch of %s broken, retrying: %s", self.key, exc)
            revision = 0
            await asyncio.sleep(self._retry_s)
