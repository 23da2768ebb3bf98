"""Server credentials for grpc.aio: mutual TLS with certificates hot-reloaded from disk.

grpc calls the fetcher given to `grpc.dynamic_ssl_server_credentials` before
every new connection's handshake, in one of grpc core's own threads (not the
event loop: they show up as `Dummy-N` threads) while it holds the GIL. So
`ServerCertificateReloader.fetch` must be cheap: it stats the three files at most
once per `check_interval_s` and reads them only when a stamp changed (inode,
size or mtime). A replacement that does not load (not PEM, a key of another
certificate, expired, half written) is logged as an error and the server keeps
its current certificate; the next change of the files is tried again. Open
connections are never touched: only new handshakes see a new certificate.

Client certificates are required and verified against `TlsFiles.ca`, which is
reloaded with the rest (a CA rollover is a file change like any other).

TLS 1.2 or newer is enforced by grpc core, not here: its SSL server config
defaults to min TLS 1.2 / max TLS 1.3 (`grpc_ssl_server_config` in
`src/core/credentials/transport/ssl/ssl_security_connector.h`) and grpc Python
has no setting to lower it. `tests/test_security_server.py` shows a TLS 1.1
handshake is refused, so a grpc upgrade that changes the default is caught.

Replace files atomically where possible (write beside, then rename; or swap a
symlink). If the certificate and key are replaced one after the other, a check
in between sees a pair that does not match (logged, old kept) and the next one
completes the rotation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import cast

import grpc

from authgw.security.errors import CertificateError
from authgw.security.filestamp import stamp_files
from authgw.security.tls import TlsMaterial, load_tls_files

__all__ = ["ServerCertificateReloader"]

log = logging.getLogger("authgw.security")


def _configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key_pem, material.cert_chain_pem)], root_certificates=material.ca_pem
    )


class ServerCertificateReloader:
    """Mutual-TLS server credentials whose certificate, key and client CA follow their files.

    Build it from material loaded at start (`load_tls_files`, so a bad file stops
    the start with an error naming it), then `server.add_secure_port(address,
    reloader.credentials())`.
    """

    def __init__(
        self,
        initial: TlsMaterial,
        *,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files = initial.files
        self._current = initial
        self._check_interval_s = check_interval_s
        self._clock = clock
        # grpc may handshake on several core threads at once; one check at a time.
        self._lock = threading.Lock()
        self._stamps = initial.stamps
        self._next_check = clock() + check_interval_s
        self._reloads = 0
        self._failures = 0

    @property
    def current(self) -> TlsMaterial:
        """The material new handshakes use."""
        return self._current

    @property
    def reload_count(self) -> int:
        """How many times a changed set of files was loaded and handed to grpc."""
        return self._reloads

    @property
    def failure_count(self) -> int:
        """How many changed sets of files could not be loaded (the old certificate stayed)."""
        return self._failures

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for `grpc.aio.Server.add_secure_port`: client certificates required."""
        # The stubs say the fetcher returns a configuration; grpc documents None as "no change".
        fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], self.fetch)
        return grpc.dynamic_ssl_server_credentials(
            _configuration(self._current), fetcher, require_client_authentication=True
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed and load, else None (grpc keeps what it has).

        grpc calls it before each handshake, on its own thread; public so a test
        or an owner can run a check by hand.
        """
        with self._lock:
            now = self._clock()
            if now < self._next_check:
                return None
            self._next_check = now + self._check_interval_s
            stamps = stamp_files(self._files.paths())
            if stamps == self._stamps:
                return None
            # Remember the stamps even if loading fails: a broken file is reported once, not per handshake.
            self._stamps = stamps
            try:
                material = load_tls_files(self._files)
            except CertificateError as exc:
                self._failures += 1
                # The message names the file and the problem; a traceback would add nothing.
                log.error(  # noqa: TRY400
                    "server certificate not reloaded, keeping serial %x: %s", self._current.serial, exc
                )
                return None
            self._current = material
            self._stamps = material.stamps
            self._reloads += 1
        log.info(
            "server certificate reloaded from %s: serial %x, expires %s",
            self._files.cert,
            material.serial,
            material.not_after.isoformat(),
        )
        return _configuration(material)
