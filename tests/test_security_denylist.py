"""The deny list: serials and fingerprints, refused per call, picked up from the file without a restart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers import assert_eventually
from test_security_support import make_certs

from authgw.security import DenyList, DenyListError, PeerIdentity, PeerIdentityReader, parse_deny_list

FP = "ab" * 32


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development CA tree for the module."""
    return make_certs(tmp_path_factory.mktemp("security-denylist"))


@pytest.fixture(scope="module")
def acq1(certs: Path) -> PeerIdentity:
    """ACQ001's identity."""
    return PeerIdentityReader().from_pem((certs / "acquirer-ACQ001.crt").read_bytes())


@pytest.fixture(scope="module")
def acq2(certs: Path) -> PeerIdentity:
    """ACQ002's identity."""
    return PeerIdentityReader().from_pem((certs / "acquirer-ACQ002.crt").read_bytes())


def test_parse_reads_serials_fingerprints_and_comments() -> None:
    """Bare and prefixed entries, colons, 0x, case and trailing comments all parse to the same values."""
    text = f"""
        # revoked 2025-09-01
        0a:0B  # trailing comment
        serial:0x00ff
        sha256:{FP.upper()}
        {":".join(FP[i : i + 2] for i in range(0, 64, 2))}
    """
    entries, errors = parse_deny_list(text, "deny.txt")
    assert errors == []
    assert entries.serials == {0x0A0B, 0xFF}
    assert entries.fingerprints == {FP}


def test_parse_reports_bad_lines_by_number() -> None:
    """A line that is neither a serial nor a fingerprint is reported with its line number; good ones stay."""
    entries, errors = parse_deny_list("0a\nnot-hex\nsha256:abcd\n" + "1" * 50 + "\n", "deny.txt")
    assert entries.serials == {0x0A}
    assert [e.line for e in errors] == [2, 3, 4]
    assert str(errors[0]).startswith("deny.txt:2: ")


async def test_listed_serial_and_fingerprint_are_refused(
    tmp_path: Path, acq1: PeerIdentity, acq2: PeerIdentity
) -> None:
    """ACQ001 listed by serial, ACQ002 by fingerprint: both refused, the reason says which."""
    path = tmp_path / "deny.txt"
    path.write_text(f"serial:{acq1.serial_hex}\nsha256:{acq2.fingerprint_sha256}\n")
    async with DenyList(path) as deny:
        assert "serial on the deny list" in deny.check(acq1).reason
        assert "fingerprint on the deny list" in deny.check(acq2).reason
        assert not deny.check(acq1).allowed
        assert not deny.check(acq2).allowed


async def test_a_change_of_the_file_is_picked_up(
    tmp_path: Path, acq1: PeerIdentity, acq2: PeerIdentity
) -> None:
    """Adding and removing an entry takes effect without a restart."""
    path = tmp_path / "deny.txt"
    path.write_text("# nothing revoked yet\n")
    async with DenyList(path, interval_s=0.02) as deny:
        assert deny.check(acq2).allowed
        path.write_text(f"{acq2.fingerprint_sha256}\n")
        await assert_eventually(lambda: _assert_denied(deny, acq2))
        assert deny.check(acq1).allowed
        path.write_text("\n")
        await assert_eventually(lambda: _assert_allowed(deny, acq2))


async def test_bad_line_at_start_is_an_error(tmp_path: Path) -> None:
    """At start a bad line stops the start, naming the file and line."""
    path = tmp_path / "deny.txt"
    path.write_text("0a\nzz\n")
    with pytest.raises(DenyListError, match=r"deny\.txt:2: "):
        await DenyList(path).start()


async def test_reload_skips_bad_lines_and_survives_a_lost_file(
    tmp_path: Path, acq1: PeerIdentity, acq2: PeerIdentity, caplog: pytest.LogCaptureFixture
) -> None:
    """On reload a typo does not hold back the other entries, and a deleted file un-revokes nothing."""
    path = tmp_path / "deny.txt"
    path.write_text(f"{acq1.serial_hex}\n")
    deny = DenyList(path)
    await deny.start()
    try:
        path.write_text(f"{acq1.serial_hex}\ntypo!\n{acq2.serial_hex}\n")
        with caplog.at_level(logging.ERROR, logger="authgw.security"):
            await deny.reload()
            assert not deny.check(acq2).allowed
            path.unlink()
            await deny.reload()
        assert not deny.check(acq1).allowed
        assert not deny.check(acq2).allowed
        assert "deny.txt:2" in caplog.text
        assert "not reloaded" in caplog.text
    finally:
        await deny.close()


def _assert_denied(deny: DenyList, identity: PeerIdentity) -> None:
    assert not deny.check(identity).allowed


def _assert_allowed(deny: DenyList, identity: PeerIdentity) -> None:
    assert deny.check(identity).allowed
