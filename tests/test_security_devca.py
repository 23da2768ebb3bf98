"""The development CA: what it writes, that it chains, and that it is idempotent."""

from __future__ import annotations

import datetime as dt
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from authgw.security.devca import LEAVES, generate, main

SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory devca wrote once."""
    path = tmp_path_factory.mktemp("security-devca") / "dev"
    generate(path)
    return path


def cert(out: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((out / f"{name}.crt").read_bytes())


def sans(c: x509.Certificate) -> list[str]:
    names = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(getattr(n, "value", n)) for n in names]


def cn(c: x509.Certificate) -> str:
    return str(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def usages(c: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_every_leaf_chains_to_its_ca_and_only_to_it(out: Path) -> None:
    """Fleet leaves verify against the fleet CA, the rogue one against the rogue CA and not the fleet's."""
    fleet, rogue = cert(out, "ca"), cert(out, "rogue-ca")
    for spec in LEAVES:
        leaf = cert(out, spec.name)
        issuer, other = (rogue, fleet) if spec.issuer == "rogue-ca" else (fleet, rogue)
        leaf.verify_directly_issued_by(issuer)
        with pytest.raises((ValueError, InvalidSignature)):
            leaf.verify_directly_issued_by(other)


@pytest.mark.parametrize(
    ("name", "names", "common_name", "eku"),
    [
        ("gateway", ["gateway.authgw.test", "localhost", "127.0.0.1"], "gateway.authgw.test", {SERVER}),
        (
            "issuer-primary",
            ["primary.issuer.authgw.test", "127.0.0.1"],
            "primary.issuer.authgw.test",
            {SERVER},
        ),
        (
            "issuer-secondary",
            ["secondary.issuer.authgw.test", "127.0.0.1"],
            "secondary.issuer.authgw.test",
            {SERVER},
        ),
        ("etcd", ["etcd.authgw.test", "localhost", "127.0.0.1"], "etcd.authgw.test", {SERVER, CLIENT}),
        ("redis", ["redis.authgw.test", "localhost", "127.0.0.1"], "redis.authgw.test", {SERVER, CLIENT}),
        ("acquirer-ACQ001", ["spiffe://authgw.test/acquirer/ACQ001"], "ACQ001", {CLIENT}),
        ("acquirer-ACQ002", ["spiffe://authgw.test/acquirer/ACQ002"], "ACQ002", {CLIENT}),
        ("gateway-client", ["spiffe://authgw.test/gateway"], "authgw-gateway", {CLIENT}),
        ("gateway-client-gw-1", ["spiffe://authgw.test/gateway"], "authgw-gateway-gw-1", {CLIENT}),
        ("gateway-client-gw-2", ["spiffe://authgw.test/gateway"], "authgw-gateway-gw-2", {CLIENT}),
        ("agent-primary", ["spiffe://authgw.test/agent/primary"], "agent-primary", {CLIENT}),
        ("agent-secondary", ["spiffe://authgw.test/agent/secondary"], "agent-secondary", {CLIENT}),
        ("settle", ["spiffe://authgw.test/settle"], "authgw-settle", {CLIENT}),
        ("operator", ["spiffe://authgw.test/operator/operator"], "operator", {CLIENT}),
        ("operator2", ["spiffe://authgw.test/operator/operator2"], "operator2", {CLIENT}),
        ("etcd-root", ["spiffe://authgw.test/etcd/root"], "root", {CLIENT}),
        ("rogue-acquirer-ACQ001", ["spiffe://authgw.test/acquirer/ACQ001"], "ACQ001", {CLIENT}),
    ],
)
def test_names_and_usages_are_as_documented(
    out: Path, name: str, names: list[str], common_name: str, eku: set[x509.ObjectIdentifier]
) -> None:
    """Each certificate has the SANs, CN and extended key usage its table row promises."""
    c = cert(out, name)
    assert sans(c) == names
    assert cn(c) == common_name
    assert usages(c) == eku


def test_expired_certificate_is_expired_and_others_are_not(out: Path) -> None:
    """Only the expired-acquirer certificate is past its notAfter."""
    now = dt.datetime.now(dt.UTC)
    expired = {s.name for s in LEAVES if cert(out, s.name).not_valid_after_utc < now}
    assert expired == {"expired-acquirer-ACQ001"}


def test_keys_are_0600_and_certificates_0644(out: Path) -> None:
    """Private keys are readable by their owner only."""
    for path in out.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644), path


def test_second_run_keeps_everything_and_force_replaces_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Idempotent without --force (same bytes, "0 files written"); --force issues new certificates."""
    out = tmp_path / "dev"
    assert main(["--out", str(out)]) == 0
    first = capsys.readouterr().out
    before = (out / "acquirer-ACQ001.crt").read_bytes()
    assert main(["--out", str(out)]) == 0
    assert "0 files written, 42 kept" in capsys.readouterr().out
    assert (out / "acquirer-ACQ001.crt").read_bytes() == before
    assert main(["--out", str(out), "--force"]) == 0
    assert (out / "acquirer-ACQ001.crt").read_bytes() != before
    assert f"wrote {out / 'acquirer-ACQ001.key'}" in first


def test_missing_leaf_is_issued_by_the_existing_ca(tmp_path: Path) -> None:
    """A deleted leaf comes back signed by the CA already on disk, which is not replaced."""
    out = tmp_path / "dev"
    generate(out)
    ca_before = (out / "ca.crt").read_bytes()
    (out / "operator2.crt").unlink()
    assert generate(out) == [out / "operator2.crt", out / "operator2.key"]
    assert (out / "ca.crt").read_bytes() == ca_before
    cert(out, "operator2").verify_directly_issued_by(cert(out, "ca"))


def test_leaves_without_their_ca_need_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lost CA is not silently recreated under certificates it did not sign."""
    out = tmp_path / "dev"
    generate(out)
    (out / "ca.key").unlink()
    assert main(["--out", str(out)]) == 1
    assert "run with --force" in capsys.readouterr().err


def test_runs_as_a_module(tmp_path: Path) -> None:
    """`python -m authgw.security.devca --out DIR` works and prints what it wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "authgw.security.devca", "--out", str(tmp_path / "dev")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    assert done.stderr == ""
