"""`authgw top` refuses unusable flags with a message naming the flag, and exits 2."""

from __future__ import annotations

import pytest

from gateway.top.command import main


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        ([], "--metrics URL missing"),
        (["--metrics", "ftp://127.0.0.1:1/metrics"], "--metrics 'ftp://127.0.0.1:1/metrics'"),
        (["--metrics", "127.0.0.1:9464"], "--metrics '127.0.0.1:9464'"),
        (["--metrics", "http://127.0.0.1:1/metrics", "--interval", "0"], "--interval 0"),
        (["--metrics", "http://127.0.0.1:1/metrics", "--etcd", "https://127.0.0.1:1"], "--etcd-cert missing"),
    ],
)
def test_bad_flags_are_named(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each unusable flag: exit status 2 and a message that names it."""
    for var in ("AUTHGW_METRICS", "AUTHGW_ETCD", "AUTHGW_ETCD_CERT", "AUTHGW_ETCD_KEY", "AUTHGW_ETCD_CA"):
        monkeypatch.delenv(var, raising=False)
    assert main(["top", "--once", *argv]) == 2
    assert named in capsys.readouterr().err
