"""Revocation without CRLs: a file of serial numbers and SHA-256 fingerprints, checked on every call.

grpc Python checks neither CRLs nor OCSP, so a certificate that must stop
working before it expires is listed here, one entry per line:

    # ACQ002 terminal key leaked, ticket 4711     (a comment: whole line or after an entry)
    serial:4f3a09c1...                            explicit serial, hex (colons, spaces, 0x allowed)
    sha256:9d1e...                                explicit fingerprint: SHA-256 of the DER certificate
    4f:3a:09:c1...                                bare, up to 40 hex digits: a serial (RFC 5280: 20 bytes)
    9d1e... (64 hex digits)                       bare, 64 hex digits: a fingerprint

A serial is unique only per issuing CA, so a listed serial is denied whichever
CA of ours issued it; our CAs draw 159-bit random serials, so that costs
nothing in practice. List the fingerprint where you must be exact.

The file is polled (FileWatcher, stat once per `interval_s`) and re-read in a
thread when it changed; the new entries replace the old in one assignment, so
`check` never sees half a list and costs two set look-ups. At start a bad line
is an error naming the file and line (a revocation list nobody can read must not
count as empty). On a reload a bad line is logged and skipped and the rest is
applied (one typo must not hold back the other revocations), and a file that
disappears or cannot be read keeps the last good list (a lost file must not
un-revoke everything).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from authgw.security.errors import ClosedError, DenyListError
from authgw.security.filestamp import stamp_files
from authgw.security.identity import AccessDecision, PeerIdentity
from authgw.security.watcher import FileWatcher

__all__ = ["DenyEntries", "DenyList", "parse_deny_list"]

log = logging.getLogger("authgw.security")

_HEX = re.compile(r"[0-9a-f]+")
_MAX_SERIAL_HEX = 40  # 20 bytes, RFC 5280 section 4.1.2.2
_FINGERPRINT_HEX = 64
_NOT_REVOKED = AccessDecision(True, "not on the deny list")


@dataclass(frozen=True, slots=True)
class DenyEntries:
    """What a deny-list file revokes."""

    serials: frozenset[int] = frozenset()
    """Revoked serial numbers, whichever of our CAs issued them."""
    fingerprints: frozenset[str] = frozenset()
    """Revoked certificates by SHA-256 of their DER form, lowercase hex."""

    def __len__(self) -> int:
        return len(self.serials) + len(self.fingerprints)


def _parse_entry(entry: str) -> int | str:
    """A serial (int) or a fingerprint (hex str); ValueError saying why not."""
    explicit = entry.lower().startswith(("serial:", "sha256:"))
    kind, _, value = entry.partition(":") if explicit else ("", "", entry)
    digits = re.sub(r"[\s:]", "", value.lower()).removeprefix("0x")
    if not digits or not _HEX.fullmatch(digits):
        raise ValueError(f"{entry!r} is not hexadecimal")
    if kind.lower() == "sha256" or (not kind and len(digits) == _FINGERPRINT_HEX):
        if len(digits) != _FINGERPRINT_HEX:
            raise ValueError(f"a SHA-256 fingerprint has 64 hex digits, {entry!r} has {len(digits)}")
        return digits
    if len(digits.lstrip("0")) > _MAX_SERIAL_HEX:
        raise ValueError(f"{entry!r} is longer than a serial (40 hex digits) and is not a fingerprint (64)")
    return int(digits, 16)


def parse_deny_list(text: str, source: Path | str) -> tuple[DenyEntries, list[DenyListError]]:
    """The entries of a deny-list file, and one error per line that is not an entry."""
    serials: set[int] = set()
    fingerprints: set[str] = set()
    errors: list[DenyListError] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            parsed = _parse_entry(entry)
        except ValueError as exc:
            errors.append(DenyListError(source, str(exc), line=number))
            continue
        if isinstance(parsed, int):
            serials.add(parsed)
        else:
            fingerprints.add(parsed)
    return DenyEntries(frozenset(serials), frozenset(fingerprints)), errors


def _read(path: Path) -> tuple[DenyEntries, list[DenyListError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DenyListError(path, f"cannot read: {exc}") from exc
    return parse_deny_list(text, path)


class DenyList:
    """Revoked certificates, from a file that is reloaded when it changes."""

    def __init__(self, path: Path, *, interval_s: float = 1.0) -> None:
        self._path = path
        self._interval_s = interval_s
        self._entries = DenyEntries()
        self._watcher: FileWatcher | None = None
        self._closed = False

    @property
    def entries(self) -> DenyEntries:
        """The entries in force."""
        return self._entries

    async def start(self) -> None:
        """Load the file (DenyListError naming file and line if it is bad) and start watching it."""
        if self._closed:
            raise ClosedError(f"deny list {self._path} is closed")
        if self._watcher is not None:
            return
        stamps = await asyncio.to_thread(stamp_files, (self._path,))
        entries, errors = await asyncio.to_thread(_read, self._path)
        if errors:
            raise errors[0]
        self._entries = entries
        log.info("deny list %s: %d serials, %d fingerprints", self._path, *self._sizes())
        self._watcher = FileWatcher(
            (self._path,),
            self._reload,
            interval_s=self._interval_s,
            initial=stamps,
            name=f"deny list {self._path}",
        )
        await self._watcher.start()

    async def close(self) -> None:
        """Stop watching; the last entries stay in force for late checks. Safe to call twice."""
        self._closed = True
        if self._watcher is not None:
            await self._watcher.close()

    async def __aenter__(self) -> DenyList:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def check(self, identity: PeerIdentity) -> AccessDecision:
        """Denied when the peer's serial or fingerprint is listed."""
        entries = self._entries
        if identity.serial in entries.serials:
            return AccessDecision(False, f"{identity.describe()} is revoked (serial on the deny list)")
        if identity.fingerprint_sha256 in entries.fingerprints:
            return AccessDecision(False, f"{identity.describe()} is revoked (fingerprint on the deny list)")
        return _NOT_REVOKED

    async def reload(self) -> None:
        """Re-read the file now (the watcher calls this on a change)."""
        await self._reload()

    async def _reload(self) -> None:
        try:
            entries, errors = await asyncio.to_thread(_read, self._path)
        except DenyListError as exc:
            # The message names the file and the problem; a traceback would add nothing.
            log.error("deny list not reloaded, keeping %d entries: %s", len(self._entries), exc)  # noqa: TRY400
            return
        for error in errors:
            log.error("deny list line skipped: %s", error)
        self._entries = entries
        log.info("deny list %s reloaded: %d serials, %d fingerprints", self._path, *self._sizes())

    def _sizes(self) -> tuple[int, int]:
        return len(self._entries.serials), len(self._entries.fingerprints)
