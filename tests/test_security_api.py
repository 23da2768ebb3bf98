"""The package's surface: a curated, sorted __all__ and no import of the packages that will use it."""

from __future__ import annotations

import subprocess
import sys

import authgw.security


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted and every name in it exists."""
    names = authgw.security.__all__
    assert names == sorted(names)
    assert all(hasattr(authgw.security, n) for n in names)


def test_imports_nothing_from_its_users() -> None:
    """Importing authgw.security (and devca) loads no gateway, standin, health or chaos module."""
    code = (
        "import sys, authgw.security, authgw.security.devca;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'gateway','standin','health','chaos'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
