"""`protocol = "iso8583"` members and `[pools.iso8583]`: defaults, values, and errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.pki import PLAINTEXT
from gateway.config import GatewayConfig, parse_config
from gateway.errors import ConfigError
from health import MemberInfo
from health.errors import MalformedRecord


def config(member: dict[str, Any], iso: dict[str, Any] | None = None) -> GatewayConfig:
    pool: dict[str, Any] = {
        "name": "primary",
        "members": [{"name": "a1", "address": "10.0.0.1:8583", **member}],
    }
    if iso is not None:
        pool["iso8583"] = iso
    data = {
        "gateway": {"listen": "127.0.0.1:50051"},
        "pools": [pool],
        **{k: dict(v) for k, v in PLAINTEXT.items()},
    }
    return parse_config(data, "gw.toml")


def test_iso8583_member_with_defaults() -> None:
    """A member says iso8583; without [pools.iso8583], 2 connections, echo after 5 s, 0100 messages."""
    cfg = config({"protocol": "iso8583"})
    pool = cfg.pools[0]
    assert pool.members[0].protocol == "iso8583"
    settings = pool.iso8583
    assert (settings.connections, settings.echo.idle_s, settings.echo.timeout_s) == (2, 5.0, 2.0)
    assert settings.financial is False


def test_pool_iso8583_table_read() -> None:
    """Every key of [pools.iso8583] reaches the link's settings (durations in seconds)."""
    iso = {
        "connections": 4, "echo_interval": "10s", "echo_timeout": "1s", "connect_timeout": "500ms",
        "reconnect_backoff": "200ms", "reconnect_backoff_max": "5s", "messages": "financial",
        "bitmap": "binary", "length_header": "ascii4", "max_frame_bytes": 2048,
    }  # fmt: skip
    s = config({"protocol": "iso8583"}, iso).pools[0].iso8583
    assert (s.connections, s.echo.idle_s, s.echo.timeout_s, s.connect_timeout_s) == (4, 10.0, 1.0, 0.5)
    assert (s.backoff_initial_s, s.backoff_max_s, s.financial) == (0.2, 5.0, True)
    assert (s.bitmap.value, s.framing.header.value, s.framing.max_frame_bytes) == ("binary", "ascii4", 2048)


@pytest.mark.parametrize(
    ("member", "iso", "key"),
    [
        ({"protocol": "iso"}, None, "protocol"),
        ({"protocol": "iso8583"}, {"messages": "0100"}, "messages"),
        ({"protocol": "iso8583"}, {"connections": 0}, "connections"),
        ({"protocol": "iso8583"}, {"echo_interval": "5"}, "echo_interval"),
        ({"protocol": "iso8583"}, {"tpdu": True}, "tpdu"),
        ({"protocol": "iso8583"}, {"max_frame_bytes": 70000}, "max_frame_bytes"),
    ],
)
def test_bad_iso8583_setting_names_the_key(
    member: dict[str, Any], iso: dict[str, Any] | None, key: str
) -> None:
    """A bad protocol or [pools.iso8583] value is an error naming the file and the key."""
    with pytest.raises(ConfigError) as info:
        config(member, iso)
    assert "gw.toml" in str(info.value) and key in str(info.value)


def test_member_record_carries_its_protocol() -> None:
    """The etcd record round-trips the protocol; an old record without one is grpc; a bad one is refused."""
    info = MemberInfo(address="10.0.0.1:8583", protocol="iso8583")
    assert MemberInfo.from_json(info.to_json()).protocol == "iso8583"
    assert MemberInfo.from_json(b'{"address": "10.0.0.1:7001"}').protocol == "grpc"
    with pytest.raises(MalformedRecord, match="protocol"):
        MemberInfo.from_json(b'{"address": "10.0.0.1:7001", "protocol": "x25"}')
