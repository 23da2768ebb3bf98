"""`[iso8583_listen]`: defaults, TLS from [tls] or its own, and errors naming the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from authgw.iso8583 import BitmapEncoding, LengthHeader
from chaos.pki import PLAINTEXT, DevPki
from gateway.config import parse_config
from gateway.errors import ConfigError

POOLS = [{"name": "p", "priority": 1, "members": [{"name": "a", "address": "127.0.0.1:7001"}]}]


def doc(listen: dict[str, Any], security: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(security or PLAINTEXT), "pools": POOLS, "iso8583_listen": listen}


def test_absent_means_no_listener_and_defaults_follow_the_docs() -> None:
    """No section: no listener. With only `listen`: 2-byte header, no TPDU, ASCII-hex bitmap, 4096, 120 s."""
    assert parse_config({**PLAINTEXT, "pools": POOLS}).iso8583_listen is None
    cfg = parse_config(doc({"listen": "127.0.0.1:8583"})).iso8583_listen
    assert cfg is not None
    assert (cfg.framing.header, cfg.framing.tpdu, cfg.framing.max_frame_bytes) == (
        LengthHeader.BINARY2,
        False,
        4096,
    )
    assert (cfg.bitmap, cfg.idle_timeout_s, cfg.max_in_flight) == (BitmapEncoding.ASCII_HEX, 120.0, 256)


def test_tls_is_the_service_tls_unless_the_section_has_its_own(tmp_path: Path) -> None:
    """[tls]'s files by default (mutual TLS); the section's own files, or its explicit insecure = true."""
    pki = DevPki(tmp_path / "pki")
    secure = {"tls": pki.section("gateway"), "issuer_tls": {"insecure": True}}
    inherited = parse_config(doc({"listen": "127.0.0.1:8583"}, secure)).iso8583_listen
    assert inherited is not None and inherited.security.tls is not None and not inherited.own_tls
    own = parse_config(doc({"listen": "127.0.0.1:8583", "insecure": True}, secure)).iso8583_listen
    assert own is not None and own.security.insecure and own.own_tls


@pytest.mark.parametrize(
    ("listen", "key", "fix"),
    [
        ({"listen": "8583"}, "iso8583_listen.listen", "0.0.0.0:8583"),
        ({"listen": "127.0.0.1:8583", "bitmap": "bcd"}, "iso8583_listen.bitmap", "ascii-hex"),
        ({"listen": "127.0.0.1:8583", "length_header": "binary4"}, "iso8583_listen.length_header", "binary2"),
        ({"listen": "127.0.0.1:8583", "max_frame_bytes": 70000}, "max_frame_bytes", "65535"),
        ({"listen": "127.0.0.1:8583", "cert": "x.pem"}, "iso8583_listen.key", "insecure"),
        ({"listen": "127.0.0.1:8583", "idle": "1s"}, "iso8583_listen", "idle"),
    ],
)
def test_a_bad_setting_names_the_key_and_the_fix(listen: dict[str, Any], key: str, fix: str) -> None:
    """Each error names the key it is about and how to fix it."""
    with pytest.raises(ConfigError) as caught:
        parse_config(doc(listen), "gw.toml")
    message = str(caught.value)
    assert key in message and fix in message, message
