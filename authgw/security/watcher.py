"""Poll some files' stamps on an interval and await a callback when any of them changed.

The base of `CertificateWatcher` (client certificates, below) and `DenyList` (its file).
Neither imports grpc, so a package without gRPC (stand-in's Redis link) can use them.
Polling rather than inotify: it sees renames, symlink swaps and network file
systems alike, and one stat per file per second costs nothing. The stats run in
`asyncio.to_thread` so that a slow disk never stalls the event loop.

The callback runs in the watcher's task, one change at a time. If it raises, the
error is logged and watching goes on: a failed rebuild must not hide the next
rotation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from authgw.security._tasks import Periodic
from authgw.security.errors import CertificateError
from authgw.security.filestamp import FileStamp, stamp_files
from authgw.security.tls import TlsMaterial, load_tls_files

__all__ = ["CertificateWatcher", "FileWatcher"]

log = logging.getLogger("authgw.security")


class FileWatcher:
    """Awaits `on_change()` after any of `paths` changed (inode, size or mtime); polls every `interval_s`."""

    def __init__(
        self,
        paths: Sequence[Path],
        on_change: Callable[[], Awaitable[None]],
        *,
        interval_s: float = 1.0,
        initial: tuple[FileStamp, ...] | None = None,
        name: str = "file watcher",
    ) -> None:
        """`initial`: the stamps the caller's current data was read under (default: stat at start)."""
        self._paths = tuple(paths)
        self._on_change = on_change
        self._stamps = initial
        self._name = name
        self._polling = Periodic(self.check, interval_s, name)

    async def start(self) -> None:
        """Start polling; a second call does nothing."""
        self._polling.check_open()
        if self._stamps is None:
            self._stamps = await asyncio.to_thread(stamp_files, self._paths)
        self._polling.start()

    async def close(self) -> None:
        """Stop polling, cancelling a callback in progress; safe to call twice."""
        await self._polling.close()

    async def __aenter__(self) -> FileWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def check(self) -> bool:
        """Stat now and run the callback if anything changed; True when it did."""
        stamps = await asyncio.to_thread(stamp_files, self._paths)
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            await self._on_change()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: handling a change of %s failed; watching on", self._name, self._paths)
        return True


class CertificateWatcher:
    """Awaits `on_change(new_material)` after our certificate, key or CA files changed and load.

    A change that does not load (half written, key of another certificate,
    expired) is logged as an error and not passed on: the owner keeps its
    working channel, and the next change is tried again.
    """

    def __init__(
        self,
        initial: TlsMaterial,
        on_change: Callable[[TlsMaterial], Awaitable[None]],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self._files = initial.files
        self._on_change = on_change
        self._watcher = FileWatcher(
            initial.files.paths(),
            self._reload,
            interval_s=interval_s,
            initial=initial.stamps,
            name=f"certificate watcher {initial.files.cert}",
        )

    async def start(self) -> None:
        """Start polling the files."""
        await self._watcher.start()

    async def close(self) -> None:
        """Stop polling; safe to call twice."""
        await self._watcher.close()

    async def check(self) -> bool:
        """Stat the files now and reload if they changed; True when they had."""
        return await self._watcher.check()

    async def __aenter__(self) -> CertificateWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _reload(self) -> None:
        try:
            material = await asyncio.to_thread(load_tls_files, self._files)
        except CertificateError as exc:
            # The message names the file and the problem; a traceback would add nothing.
            log.error("client certificate not reloaded, keeping the current one: %s", exc)  # noqa: TRY400
            return
        log.info("client certificate %s changed: serial %x", self._files.cert, material.serial)
        await self._on_change(material)
