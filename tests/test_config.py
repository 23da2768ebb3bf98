"""Config loading: valid files load, every error names the file and the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from chaos.pki import PLAINTEXT
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "gateway.example.toml"


def test_example_config_loads() -> None:
    """The shipped example is valid, with pools sorted by priority and ms turned into seconds."""
    cfg = load_config(EXAMPLE)
    assert [p.name for p in cfg.pools] == ["primary", "secondary"]
    assert cfg.routing.deadline == timedelta(seconds=2) and cfg.routing.deadline_s == 2.0
    assert cfg.pools[0].attempt_timeout == timedelta(milliseconds=400)


def test_missing_file_named() -> None:
    """A missing file is reported with its path."""
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_config("nope.toml")


def test_bad_toml_named(tmp_path: Path) -> None:
    """A file that is not TOML is reported as such."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_unknown_key_named() -> None:
    """A typo in a key is reported with the known keys."""
    with pytest.raises(ConfigError) as info:
        parse_config({"routing": {"deadline_msec": 100}, "pools": [{"name": "p"}]}, "x.toml")
    assert info.value.key == "routing.deadline_msec"
    assert "deadline" in info.value.fix


def test_old_duration_key_gets_the_new_spelling() -> None:
    """A duration written the old way (deadline_ms = 2000) is refused with its new spelling as the fix."""
    with pytest.raises(ConfigError) as info:
        parse_config({"routing": {"deadline_ms": 2000}, "pools": [{"name": "p"}]}, "x.toml")
    assert info.value.key == "routing.deadline_ms"
    assert 'deadline = "2s"' in info.value.fix


def test_duration_needs_a_unit() -> None:
    """A duration without a unit is refused, naming the key and the syntax."""
    with pytest.raises(ConfigError) as info:
        parse_config({"routing": {"deadline": 2000}, "pools": [{"name": "p"}]}, "x.toml")
    assert info.value.key == "routing.deadline"
    assert "150ms" in info.value.fix


def test_member_address_checked() -> None:
    """A member address without a port is rejected, naming the member."""
    data = {"pools": [{"name": "p", "members": [{"name": "m", "address": "localhost"}]}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data, "x.toml")
    assert info.value.key == "pools[0].members[0].address"


def test_attempt_timeout_must_fit_deadline() -> None:
    """An attempt timeout that leaves no room for the stand-in reserve is rejected."""
    data = {"routing": {"deadline": "500ms"}, "pools": [{"name": "p", "attempt_timeout": "400ms"}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data, "x.toml")
    assert info.value.key == "pools[0].attempt_timeout"


def test_share_range_checked() -> None:
    """A share outside 0..1 is rejected."""
    with pytest.raises(ConfigError) as info:
        parse_config({"outlier": {"max_ejection_share": 2}, "pools": [{"name": "p"}], **PLAINTEXT}, "x.toml")
    assert info.value.key == "outlier.max_ejection_share"


def test_no_pools_and_no_etcd_rejected() -> None:
    """A gateway with nowhere to route is rejected at load."""
    with pytest.raises(ConfigError, match="at least one"):
        parse_config({}, "x.toml")


# -- security sections (gateway/config_security.py) -------------------------------------------

_POOLS = [{"name": "p", "members": [{"name": "m", "address": "127.0.0.1:7001"}]}]


def test_tls_is_required_unless_insecure_is_said() -> None:
    """Without [tls] the config is refused, naming tls.cert: plaintext is never the default."""
    with pytest.raises(ConfigError) as info:
        parse_config({"pools": _POOLS, "issuer_tls": {"insecure": True}}, "x.toml")
    assert info.value.key == "tls.cert" and "insecure = true" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config({"pools": _POOLS, "tls": {"insecure": True}}, "x.toml")
    assert info.value.key == "issuer_tls.cert"


def test_insecure_with_files_is_ambiguous() -> None:
    """`insecure = true` beside certificate files is refused rather than guessed."""
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"pools": _POOLS, "tls": {"insecure": True, "cert": "a.pem"}, "issuer_tls": {"insecure": True}},
            "x.toml",
        )
    assert info.value.key == "tls.insecure"


def test_etcd_needs_tls_too() -> None:
    """etcd endpoints without TLS files or insecure = true are refused, naming etcd.cert."""
    doc = {"pools": _POOLS, "tls": {"insecure": True}, "issuer_tls": {"insecure": True}}
    with pytest.raises(ConfigError) as info:
        parse_config({**doc, "etcd": {"endpoints": ["http://127.0.0.1:2379"]}}, "x.toml")
    assert info.value.key == "etcd.cert"


def test_one_identity_one_acquirer() -> None:
    """A certificate identity may act as one acquirer only; acquirer ids are digits."""
    doc = {"pools": _POOLS, "tls": {"insecure": True}, "issuer_tls": {"insecure": True}}
    two = [{"id": "1001", "identities": ["spiffe://x/a"]}, {"id": "1002", "identities": ["spiffe://x/a"]}]
    with pytest.raises(ConfigError) as info:
        parse_config({**doc, "acquirers": two}, "x.toml")
    assert info.value.key == "acquirers[1].identities"
    with pytest.raises(ConfigError) as info:
        parse_config({**doc, "acquirers": [{"id": "ACQ1", "identities": ["spiffe://x/a"]}]}, "x.toml")
    assert info.value.key == "acquirers[0].id"


def test_members_from_etcd_default_to_the_listed_addresses() -> None:
    """A pool's `allowed` defaults to its own members' addresses: etcd cannot add a host."""
    doc = {"pools": _POOLS, "tls": {"insecure": True}, "issuer_tls": {"insecure": True}}
    cfg = parse_config(doc, "x.toml")
    assert cfg.pools[0].allowed == ("127.0.0.1:7001",)
    assert cfg.reflection is False and cfg.max_message_bytes == 16 * 1024


def test_etcd_scheme_must_agree_with_its_tls() -> None:
    """http:// endpoints beside a client certificate are refused at load, naming etcd.endpoints."""
    doc = {"pools": _POOLS, "tls": {"insecure": True}, "issuer_tls": {"insecure": True}}
    etcd = {"endpoints": ["http://127.0.0.1:2379"], "cert": "c.pem", "key": "k.pem", "ca": "ca.pem"}
    with pytest.raises(ConfigError) as info:
        parse_config({**doc, "etcd": etcd}, "x.toml")
    assert info.value.key == "etcd.endpoints" and "https://" in str(info.value)
    cfg = parse_config({**doc, "etcd": {**etcd, "endpoints": ["https://127.0.0.1:2379"]}}, "x.toml")
    assert cfg.security.etcd.tls is not None
