"""Has a file changed? A stat-based stamp (inode, size, mtime), cheap enough for a hot path.

A stamp is read with one `os.stat` per file and compares equal while nothing was
written, renamed over or deleted. `os.stat` follows symlinks on purpose: a
Kubernetes secret or a `ln -sfn` swap changes the target's inode, which shows.
It is a syscall, not a read: fine in grpc's handshake threads, and cheap enough
that the watchers call it through `asyncio.to_thread` only to keep slow disks
off the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileStamp", "stamp_files"]


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What a stat says about one file; None fields mean the file could not be stat'ed."""

    path: Path
    """The file this stamp describes."""
    device: int | None
    """st_dev: with the inode, tells a renamed-over file from the old one."""
    inode: int | None
    """st_ino: changes when a new file is renamed over the old path."""
    size: int | None
    """st_size in bytes."""
    mtime_ns: int | None
    """st_mtime_ns: changes when the file is rewritten in place."""

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        """Stat `path`; a missing or unreadable file gives a stamp of Nones (itself a change)."""
        try:
            st = os.stat(path)
        except OSError:
            return cls(path, None, None, None, None)
        return cls(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def stamp_files(paths: Iterable[Path]) -> tuple[FileStamp, ...]:
    """One stamp per path, in order; two results compare equal when no file changed."""
    return tuple(FileStamp.of(p) for p in paths)
