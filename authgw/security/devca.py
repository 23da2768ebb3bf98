"""A development CA and every certificate a local fleet needs: `python -m authgw.security.devca --out DIR`.

One CA ("fleet") signs every server and client certificate; a second one
("rogue") signs a certificate no server may accept, for tests. Server
certificates carry only serverAuth, client certificates only clientAuth, so a
server's certificate cannot be replayed as a client's. Exceptions: etcd and
Redis use their server certificate as a client too (etcd's gRPC gateway dials
etcd itself; Redis replication and cluster bus), so theirs carry both.

Files (`NAME.crt` certificate, `NAME.key` private key, mode 0600):

| NAME                    | kind   | subject / SANs                                                        |
|-------------------------|--------|-----------------------------------------------------------------------|
| ca, rogue-ca            | CA     | CN=authgw dev fleet CA / CN=authgw dev rogue CA                       |
| gateway                 | server | DNS gateway.authgw.test, localhost; IP 127.0.0.1                      |
| issuer-primary          | server | DNS primary.issuer.authgw.test; IP 127.0.0.1                          |
| issuer-secondary        | server | DNS secondary.issuer.authgw.test; IP 127.0.0.1                        |
| etcd                    | both   | DNS etcd.authgw.test, localhost; IP 127.0.0.1                         |
| redis                   | both   | DNS redis.authgw.test, localhost; IP 127.0.0.1                        |
| acquirer-ACQ001, -ACQ002| client | CN=ACQ00n; URI spiffe://authgw.test/acquirer/ACQ00n                   |
| gateway-client          | client | CN=authgw-gateway; URI spiffe://authgw.test/gateway                   |
| gateway-client-gw-1..3  | client | CN=authgw-gateway-gw-n (etcd user of instance gw-n); URI as above     |
| agent-primary, -secondary | client | CN=agent-<pool>; URI spiffe://authgw.test/agent/<pool>              |
| settle                  | client | CN=authgw-settle; URI spiffe://authgw.test/settle                     |
| operator, operator2     | client | CN=operator / operator2; URI spiffe://authgw.test/operator/<name>     |
| etcd-root               | client | CN=root: etcd's root user, for `etcd-auth` only; URI .../etcd/root    |
| rogue-acquirer-ACQ001   | client | as acquirer-ACQ001, but signed by the rogue CA                        |
| expired-acquirer-ACQ001 | client | as acquirer-ACQ001, expired yesterday                                 |

Idempotent: files already there are kept (an existing CA signs any missing
leaf) unless `--force`; every file is written beside its target and renamed
over it, keys created 0600 from the start. For development and tests only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from authgw.security.errors import CertificateError
from authgw.security.pemfile import parse_certificate_chain, parse_private_key, read_file

__all__ = ["LEAVES", "Authority", "IssuedCert", "LeafSpec", "generate", "main"]

_CA_DAYS = 3650
_LEAF_DAYS = 825
_SKEW = dt.timedelta(hours=1)  # not-before slightly in the past, so a peer's clock a little behind agrees
_SPIFFE = "spiffe://authgw.test"


@dataclass(frozen=True, slots=True)
class LeafSpec:
    """One certificate the development fleet needs."""

    name: str
    """File stem: NAME.crt and NAME.key."""
    common_name: str
    """Subject CN (etcd maps a client's CN to its user)."""
    usage: str
    """"server", "client" or "both" (extended key usage)."""
    dns: tuple[str, ...] = ()
    """SAN DNS names."""
    ips: tuple[str, ...] = ()
    """SAN IP addresses."""
    uris: tuple[str, ...] = ()
    """SAN URIs (SPIFFE IDs)."""
    issuer: str = "ca"
    """Stem of the CA that signs it: "ca" (the fleet) or "rogue-ca"."""
    expired: bool = False
    """Issue it already expired (tests)."""


def _server(name: str, *dns: str, usage: str = "server") -> LeafSpec:
    return LeafSpec(name, dns[0], usage, dns=dns, ips=("127.0.0.1",))


def _client(name: str, cn: str, path: str, *, issuer: str = "ca", expired: bool = False) -> LeafSpec:
    return LeafSpec(name, cn, "client", uris=(f"{_SPIFFE}/{path}",), issuer=issuer, expired=expired)


LEAVES: tuple[LeafSpec, ...] = (
    _server("gateway", "gateway.authgw.test", "localhost"),
    _server("issuer-primary", "primary.issuer.authgw.test"),
    _server("issuer-secondary", "secondary.issuer.authgw.test"),
    _server("etcd", "etcd.authgw.test", "localhost", usage="both"),
    _server("redis", "redis.authgw.test", "localhost", usage="both"),
    _client("acquirer-ACQ001", "ACQ001", "acquirer/ACQ001"),
    _client("acquirer-ACQ002", "ACQ002", "acquirer/ACQ002"),
    _client("gateway-client", "authgw-gateway", "gateway"),
    _client("agent-primary", "agent-primary", "agent/primary"),
    _client("agent-secondary", "agent-secondary", "agent/secondary"),
    _client("gateway-client-gw-1", "authgw-gateway-gw-1", "gateway"),
    _client("gateway-client-gw-2", "authgw-gateway-gw-2", "gateway"),
    _client("gateway-client-gw-3", "authgw-gateway-gw-3", "gateway"),
    _client("settle", "authgw-settle", "settle"),
    _client("operator", "operator", "operator/operator"),
    _client("operator2", "operator2", "operator/operator2"),
    _client("etcd-root", "root", "etcd/root"),
    _client("rogue-acquirer-ACQ001", "ACQ001", "acquirer/ACQ001", issuer="rogue-ca"),
    _client("expired-acquirer-ACQ001", "ACQ001", "acquirer/ACQ001", expired=True),
)
"""Every leaf `generate` writes, in order."""

_CAS = {"ca": "authgw dev fleet CA", "rogue-ca": "authgw dev rogue CA"}


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A certificate and its private key, PEM."""

    cert_pem: bytes
    """The certificate."""
    key_pem: bytes
    """Its unencrypted private key (PKCS#8)."""


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _names(spec: LeafSpec) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ips]
    names += [x509.UniformResourceIdentifier(u) for u in spec.uris]
    return names


def _usages(usage: str) -> list[x509.ObjectIdentifier]:
    return {
        "server": [ExtendedKeyUsageOID.SERVER_AUTH],
        "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
        "both": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    }[usage]


class Authority:
    """A CA held in memory: made new, or loaded from NAME.crt / NAME.key."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, common_name: str, *, now: dt.datetime | None = None) -> Authority:
        """A new self-signed CA, valid ten years."""
        now = now or dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> Authority:
        """A CA from its certificate and (EC) key files."""
        cert = parse_certificate_chain(read_file(cert_path), cert_path)[0]
        key = parse_private_key(read_file(key_path), key_path)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateError(key_path, "devca signs with EC keys only")
        return cls(cert, key)

    def files(self) -> IssuedCert:
        """The CA's own certificate and key, PEM."""
        return IssuedCert(self.cert.public_bytes(serialization.Encoding.PEM), _key_pem(self.key))

    def issue(self, spec: LeafSpec, *, now: dt.datetime | None = None) -> IssuedCert:
        """A new key and a certificate for `spec`, signed by this CA."""
        now = now or dt.datetime.now(dt.UTC)
        start, end = now - _SKEW, now + dt.timedelta(days=_LEAF_DAYS)
        if spec.expired:
            start, end = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
        key = ec.generate_private_key(ec.SECP256R1())
        usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage(_usages(spec.usage)), critical=False)
            .add_extension(aki, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if names := _names(spec):
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return IssuedCert(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write `data` beside `path` with `mode` from the first byte, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_pair(out: Path, stem: str, issued: IssuedCert) -> list[Path]:
    crt, key = out / f"{stem}.crt", out / f"{stem}.key"
    write_file(key, issued.key_pem, 0o600)
    write_file(crt, issued.cert_pem, 0o644)
    return [crt, key]


def _authority(out: Path, stem: str, force: bool, written: list[Path]) -> Authority:
    crt, key = out / f"{stem}.crt", out / f"{stem}.key"
    if not force and crt.exists() and key.exists():
        return Authority.load(crt, key)
    leaves = [out / f"{s.name}.crt" for s in LEAVES if s.issuer == stem]
    if not force and any(p.exists() for p in leaves):
        raise CertificateError(crt, "missing, but certificates it signed are there; run with --force")
    authority = Authority.create(_CAS[stem])
    written += _write_pair(out, stem, authority.files())
    return authority


def generate(out: Path, *, force: bool = False) -> list[Path]:
    """Write the CAs and every leaf of LEAVES into `out`; return the files written (kept ones are not)."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    authorities = {stem: _authority(out, stem, force, written) for stem in _CAS}
    for spec in LEAVES:
        if not force and (out / f"{spec.name}.crt").exists() and (out / f"{spec.name}.key").exists():
            continue
        written += _write_pair(out, spec.name, authorities[spec.issuer].issue(spec))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: generate, print each file written, exit 1 with the reason on an error."""
    summary = (__doc__ or "").split("\n", 1)[0]
    parser = argparse.ArgumentParser(prog="python -m authgw.security.devca", description=summary)
    parser.add_argument("--out", type=Path, required=True, help="directory for the certificates")
    parser.add_argument("--force", action="store_true", help="regenerate everything, CAs included")
    args = parser.parse_args(argv)
    try:
        written = generate(args.out, force=args.force)
    except (CertificateError, OSError) as exc:
        print(f"devca: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    kept = 2 * (len(LEAVES) + len(_CAS)) - len(written)
    print(f"devca: {len(written)} files written, {kept} kept in {args.out} (development only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
