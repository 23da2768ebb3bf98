"""Client channels: the server-name check, and channels rebuilt when our certificate changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from helpers import assert_eventually
from test_security_support import copy_files, echo_server, files, make_certs, reissue, slow, who

from authgw.security import (
    CertificateWatcher,
    FileWatcher,
    ServerCertificateReloader,
    SwappableChannel,
    TlsMaterial,
    channel_options,
    load_tls_files,
    secure_channel,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development CA tree for the module."""
    return make_certs(tmp_path_factory.mktemp("security-client"))


@pytest.fixture(scope="module")
async def issuer_port(certs: Path) -> AsyncIterator[int]:
    """An echo server presenting the primary issuer pool's certificate."""
    reloader = ServerCertificateReloader(load_tls_files(files(certs, "issuer-primary")))
    async with echo_server(reloader.credentials()) as port:
        yield port


@pytest.mark.parametrize(
    ("server_name", "ok"),
    [("primary.issuer.authgw.test", True), ("secondary.issuer.authgw.test", False)],
)
async def test_server_name_is_checked_when_dialling_an_ip(
    certs: Path, issuer_port: int, server_name: str, ok: bool
) -> None:
    """Dialled by IP, the server must still carry the expected name: a primary host is no secondary."""
    material = load_tls_files(files(certs, "gateway-client"))
    async with secure_channel(f"127.0.0.1:{issuer_port}", material, server_name=server_name) as channel:
        if ok:
            assert (await who(channel))["identity"]["cn"] == "authgw-gateway"
        else:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await who(channel)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_channel_options_set_the_name_once() -> None:
    """A caller's own override is replaced, not duplicated, and no name means no override."""
    opts = channel_options("a.test", [("grpc.ssl_target_name_override", "b.test"), ("grpc.x", 1)])
    assert opts == [("grpc.x", 1), ("grpc.ssl_target_name_override", "a.test")]
    assert channel_options(None) == []


async def test_watcher_rebuilds_the_channel_and_calls_in_flight_finish(
    certs: Path, issuer_port: int, tmp_path: Path
) -> None:
    """Our cert replaced on disk: new calls present it, a call in flight on the old channel completes."""
    mine = copy_files(certs, "gateway-client", tmp_path)
    first = load_tls_files(mine)
    link = SwappableChannel(
        f"127.0.0.1:{issuer_port}", first, server_name="primary.issuer.authgw.test", close_grace_s=5.0
    )
    async with CertificateWatcher(first, link.rebuild, interval_s=0.05):
        in_flight = asyncio.create_task(slow(link.channel, 0.5))
        await asyncio.sleep(0.1)  # the slow call is on the wire, on the old channel
        new_serial = reissue(certs, "gateway-client", mine)

        async def new_calls_present_new_certificate() -> None:
            assert (await who(link.channel))["identity"]["serial"] == new_serial

        await assert_eventually(new_calls_present_new_certificate, timeout_s=3.0)
        assert (await in_flight)["identity"]["serial"] == first.serial
    await link.close()
    assert link.material.serial == new_serial


async def test_broken_client_certificate_is_not_passed_on(
    certs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A half-written key is logged and ignored; the owner's callback only ever sees loadable material."""
    mine = copy_files(certs, "gateway-client", tmp_path)
    seen: list[TlsMaterial] = []

    async def on_change(material: TlsMaterial) -> None:
        seen.append(material)

    watcher = CertificateWatcher(load_tls_files(mine), on_change)
    mine.key.write_bytes(mine.key.read_bytes()[:40])
    with caplog.at_level(logging.ERROR, logger="authgw.security"):
        assert await watcher.check()
    assert seen == []
    assert str(mine.key) in caplog.text
    new_serial = reissue(certs, "gateway-client", mine)
    assert await watcher.check()
    assert [m.serial for m in seen] == [new_serial]


async def test_file_watcher_keeps_watching_after_a_failing_callback(tmp_path: Path) -> None:
    """A callback that raises is logged; the next change is still reported."""
    path = tmp_path / "f"
    path.write_text("1")
    calls: list[str] = []

    async def on_change() -> None:
        calls.append(path.read_text())
        if len(calls) == 1:
            raise RuntimeError("rebuild failed")

    async with FileWatcher([path], on_change, interval_s=0.02):
        path.write_text("22")
        await assert_eventually(lambda: _assert_equal(calls, ["22"]))
        path.write_text("333")
        await assert_eventually(lambda: _assert_equal(calls, ["22", "333"]))


def _assert_equal(actual: list[str], expected: list[str]) -> None:
    assert actual == expected
