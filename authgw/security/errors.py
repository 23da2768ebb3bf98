"""Errors of the security package: one root, expected failures only.

    SecurityError                 root: anything authgw.security raises on purpose
    ├── SettingsError             security settings contradict themselves (names the key and the fix)
    ├── CertificateError          a certificate, key or CA file is unusable (names the file and why:
    │                             unreadable, not PEM, key does not match, expired, not yet valid, not a CA)
    ├── DenyListError             a deny-list file is unreadable or has a bad line (names file and line)
    ├── AccessDenied              a peer is not allowed: no certificate, not in the allowlist, acting
    │                             as another acquirer, or revoked (the reason says which)
    └── ClosedError               a watcher, deny list, warning or channel is used after close()

Foreign errors are translated where they enter, once per dependency: cryptography's
errors and `OSError` on certificate and key files in `pemfile`; `OSError` on the
deny-list file in `denylist`; a failed `os.stat` in `filestamp` is not an error
but a stamp that differs (the next read then says what is wrong). Anything else
escaping this package is a bug.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AccessDenied",
    "CertificateError",
    "ClosedError",
    "DenyListError",
    "SecurityError",
    "SettingsError",
]


class SecurityError(Exception):
    """Root of every error raised on purpose by the security package."""


class SettingsError(SecurityError, ValueError):
    """Security settings are inconsistent: the message names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"{key}: {problem}; fix: {fix}")


class CertificateError(SecurityError):
    """A certificate, private key or CA file cannot be used; names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class DenyListError(SecurityError):
    """A deny-list file cannot be read or has a line that is neither a serial nor a fingerprint."""

    def __init__(self, path: Path | str, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


class AccessDenied(SecurityError):
    """A peer may not make this call; `reason` says why (safe to log, never contains a PAN)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ClosedError(SecurityError):
    """A watcher, deny list, plaintext warning or channel is used after close()."""
