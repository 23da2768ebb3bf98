"""The package's public surface and its dependency rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import authgw.iso8583 as iso8583

ROOT = Path(__file__).resolve().parent.parent

_IMPORTED_BY_THE_PACKAGE = """
import json, sys
before = set(sys.modules)
import authgw.iso8583 as iso
iso.currency_alpha3(iso.currency_numeric("EUR"))  # pycountry loads its data lazily
new = {name.split(".")[0] for name in set(sys.modules) - before}
print(json.dumps(sorted(n for n in new if n not in sys.stdlib_module_names)))
"""


def test_all_is_sorted_unique_and_importable() -> None:
    """__all__ is sorted (constants first, as ruff sorts), without repeats, and every name exists."""
    names = iso8583.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert len(set(names)) == len(names)
    assert all(hasattr(iso8583, name) for name in names)


def test_the_package_imports_only_the_stdlib_pyiso8583_and_pycountry() -> None:
    """Importing and using authgw.iso8583 loads no gateway, standin, health or chaos module, nor others."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTED_BY_THE_PACKAGE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert set(json.loads(result.stdout)) <= {"authgw", "iso8583", "pycountry"}
