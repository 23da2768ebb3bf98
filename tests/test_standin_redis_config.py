"""The stand-in file's [redis] section: TLS or an explicit insecure, an ACL user, errors that name the key."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
from test_standin_support import ENV

from chaos.pki import PLAINTEXT, DevPki
from chaos.processes import free_port
from chaos.topology import to_toml
from gateway.config import parse_config
from standin import ConfigError, StandIn, load_config
from standin.acl import DEAD, JOURNAL, REQUEST, ROLE_GRANTS, SETTLED, SPEND, STATUS, rules_for
from standin.redis_config import RedisRole
from standin.settlement import Settlement, SettlementSettings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return DevPki(tmp_path_factory.mktemp("redis-config-pki"))


def write(tmp_path: Path, redis: dict[str, Any] | None) -> Path:
    path = tmp_path / "standin.toml"
    path.write_text(to_toml({"redis": redis} if redis is not None else {}))
    return path


def tls(
    pki: DevPki, tmp_path: Path, leaf: str = "gateway-client", user: str = "authgw-gateway"
) -> dict[str, Any]:
    """A complete TLS login (its password file written)."""
    secret = tmp_path / f"{user}.password"
    secret.write_text("s3cret\n")
    return {**pki.section(leaf), "username": user, "password_file": str(secret)}


RS = "rediss://127.0.0.1:6380/0"


@pytest.mark.parametrize(
    ("redis", "key"),
    [
        (None, "redis.insecure"),  # no section: redis:// by default, never silently plaintext
        ({"url": "redis://127.0.0.1:6379/0"}, "redis.insecure"),
        ({"url": "unix:///run/redis.sock"}, "redis.insecure"),
        ({"url": RS}, "redis.cert"),
        ({"url": RS, "insecure": True}, "redis.insecure"),
        ({"url": "redis://h:1/0", "insecure": True, "username": "a b"}, "redis.username"),
        ({"url": "redis://h:1/0", "insecure": True, "username": "u"}, "redis.password_file"),
        ({"url": "redis://h:1/0", "insecure": True, "password_file": "p"}, "redis.username"),
        ({"url": "rediss://u:p@127.0.0.1:6380/0"}, "redis.url"),
        ({"url": "redis://h:1/0", "insecure": True, "settle": {"bogus": 1}}, "redis.settle.bogus"),
        ({"url": "redis://h:1/0", "insecure": True, "operator": {}}, "redis.operator.insecure"),
    ],
)
def test_a_bad_redis_section_names_its_key(tmp_path: Path, redis: dict[str, Any] | None, key: str) -> None:
    """Plaintext without insecure, TLS without files or user, a password in the URL: each names its key."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, redis), ENV)
    assert caught.value.key == key, caught.value


def test_tls_without_a_user_names_the_username(pki: DevPki, tmp_path: Path) -> None:
    """Over TLS stand-in always logs in as its own ACL user."""
    login = tls(pki, tmp_path)
    del login["username"], login["password_file"]
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"url": RS, **login}), ENV)
    assert caught.value.key == "redis.username"


def test_a_tls_file_with_every_login_loads(pki: DevPki, tmp_path: Path) -> None:
    """Gateway, settle and operator logins load; a role without its own falls back to the gateway's."""
    settle = tls(pki, tmp_path, "settle", "authgw-settle")
    settings = load_config(write(tmp_path, {"url": RS, **tls(pki, tmp_path), "settle": settle}), ENV).redis
    assert settings.login.username == "authgw-gateway" and settings.login.tls
    assert settings.for_role(RedisRole.SETTLE).login.username == "authgw-settle"
    assert settings.for_role(RedisRole.OPERATOR).login == settings.login
    assert settings.settle is not None and settings.settle.security.tls == pki.files("settle")


def test_a_plaintext_url_over_a_tls_file_is_refused(pki: DevPki, tmp_path: Path) -> None:
    """A gateway's `[standin] redis_url = "redis://..."` cannot turn a TLS stand-in file plaintext."""
    standin = write(tmp_path, {"url": RS, **tls(pki, tmp_path)})
    doc = {
        "gateway": {"listen": "127.0.0.1:0", "instance": "gw-1"},
        **PLAINTEXT,
        "standin": {"config": str(standin), "redis_url": "redis://127.0.0.1:6379/0"},
        "pools": [{"name": "p", "priority": 1, "members": [{"name": "m", "address": "127.0.0.1:1"}]}],
    }
    with pytest.raises(ConfigError, match=r"redis\.url.*redis://.*TLS"):
        parse_config(doc, str(tmp_path / "gateway.toml"), ENV)
    settings = load_config(standin, ENV).redis
    with pytest.raises(ConfigError, match=r"redis\.url"):
        dataclasses.replace(settings, url="redis://127.0.0.1:6379/0")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"password_file": "/nonexistent/password"}, "redis.password_file"),
        ({"cert": "EXPIRED"}, "redis.cert"),
        ({"key": "OTHER"}, "redis.key"),
    ],
    ids=["no password file", "expired certificate", "key of another certificate"],
)
def test_unusable_files_stop_the_engine_naming_the_key(
    pki: DevPki, tmp_path: Path, change: dict[str, str], key: str
) -> None:
    """The engine reads its certificate and password when built: a bad one is a ConfigError with its key."""
    files = {"EXPIRED": str(pki.files("expired-acquirer-ACQ001").cert), "OTHER": str(pki.files("settle").key)}
    login = {**tls(pki, tmp_path), **{k: files.get(v, v) for k, v in change.items()}}
    config = load_config(write(tmp_path, {"url": RS, **login}), ENV)
    with pytest.raises(ConfigError) as caught:
        StandIn.from_config(config)
    assert caught.value.key == key, caught.value


def test_the_settle_login_is_checked_when_the_worker_is_built(pki: DevPki, tmp_path: Path) -> None:
    """A settlement worker logs in as [redis.settle]: its unreadable password file is named."""
    settle = {**tls(pki, tmp_path, "settle", "authgw-settle"), "password_file": str(tmp_path / "missing")}
    config = load_config(write(tmp_path, {"url": RS, **tls(pki, tmp_path), "settle": settle}), ENV)
    with pytest.raises(ConfigError) as caught:
        Settlement.from_config(config, SettlementSettings(), sender=None, issuer_healthy=lambda: True)  # type: ignore[arg-type]
    assert caught.value.key == "redis.settle.password_file"


async def test_plaintext_is_announced_and_tls_is_not(
    pki: DevPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An insecure [redis] logs a PLAINTEXT warning when the engine starts; a TLS one does not."""
    caplog.set_level(logging.WARNING)
    for name, redis in (
        ("plain", {"url": f"redis://127.0.0.1:{free_port()}/0", "insecure": True}),
        ("tls", {"url": f"rediss://127.0.0.1:{free_port()}/0", **tls(pki, tmp_path)}),
    ):
        caplog.clear()
        (tmp_path / name).mkdir()
        async with StandIn.from_config(load_config(write(tmp_path / name, redis), ENV)):
            pass  # nothing listens there: stand-in starts on its local journal
        warned = [r.getMessage() for r in caplog.records if "PLAINTEXT" in r.getMessage()]
        assert bool(warned) == (name == "plain"), warned
        assert all("Redis (gateway" in w for w in warned)


def test_rules_give_each_key_family_its_own_selector() -> None:
    """Card statuses are read-only with GET alone; EVALSHA reaches every key a script declares."""
    rules = rules_for(ROLE_GRANTS[RedisRole.GATEWAY], ("ping",), select=False, cluster=False)
    assert rules.startswith("resetkeys resetchannels -@all +ping (")
    assert "+select" not in rules
    assert " +ping +select (" in rules_for((), ("ping",), select=True, cluster=False) + " ("
    assert f"(%R~{STATUS} +get)" in rules
    assert f"(%R~{DEAD} +xlen)" in rules
    evalsha = next(part for part in rules.split(") (") if "+evalsha" in part)
    assert all(f"~{key}" in evalsha for key in (STATUS, REQUEST, SPEND, JOURNAL))
    assert (STATUS, JOURNAL, SETTLED) == (
        "authgw:{*}:status",
        "authgw:{journal:*}:decisions",
        "authgw:{journal:*}:settled:*",
    )
