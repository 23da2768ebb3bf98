"""The public surface of `standin`: curated exports, independence from the gateway, lifecycle."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PAN_VISA
from redis.asyncio import Connection
from test_standin_support import ENV, engine, request

import standin
from chaos.processes import ManagedProcess, free_port
from standin import ClosedError, InvalidRequestError, Reason, StandIn, load_config
from standin.redis_io import make_redis_client
from standin.settings import RedisSettings


def test_all_is_sorted_and_importable() -> None:
    """`standin.__all__` is sorted and every name in it exists."""
    assert standin.__all__ == sorted(standin.__all__)
    assert all(hasattr(standin, name) for name in standin.__all__)


def test_standin_imports_neither_gateway_nor_generated_code() -> None:
    """Importing every standin module pulls in no gateway, generated protobuf or gRPC module."""
    code = (
        "import pkgutil, importlib, sys, standin\n"
        "for m in pkgutil.walk_packages(standin.__path__, 'standin.'): importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gateway', 'grpc')"
        " or m.startswith('authgw.v1'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_request_repr_hides_the_pan() -> None:
    """A request printed in a log or traceback does not show its PAN."""
    assert PAN_VISA not in repr(request(PAN_VISA))


def test_request_refuses_a_malformed_pan() -> None:
    """A request with a PAN that is not 12-19 digits cannot be built."""
    with pytest.raises(InvalidRequestError, match="pan must be 12-19 digits"):
        request("4111-1111")


async def test_decide_after_close_is_refused(tmp_path: Path) -> None:
    """A closed engine refuses decisions with ClosedError (the gateway answers 91)."""
    async with engine(free_port(), tmp_path / "l.db") as e:
        pass
    with pytest.raises(ClosedError):
        await e.decide(request(PAN_VISA), Reason.FORCED)


async def test_close_twice_is_safe(tmp_path: Path) -> None:
    """close() may be called again after the context manager closed the engine."""
    async with engine(free_port(), tmp_path / "l.db") as e:
        pass
    await e.close()


async def test_built_from_a_config_file(redis_server: ManagedProcess, tmp_path: Path) -> None:
    """StandIn.from_config(load_config(path, env)) decides with its own Redis client and closes it."""
    path = tmp_path / "standin.toml"
    path.write_text(
        f'[redis]\nurl = "redis://127.0.0.1:{redis_server.port}/0"\ninsecure = true\n'
        '[standin]\ninstance = "gw-cfg"\n'
    )
    config = await asyncio.to_thread(load_config, path, ENV)
    async with StandIn.from_config(config) as e:
        d = await e.decide(request(PAN_VISA), Reason.FORCED)
    assert (d.approved, d.gateway_instance) == (True, "gw-cfg")
    assert (tmp_path / "standin.sqlite3").exists()


def test_commands_are_packed_in_c_with_the_same_bytes() -> None:
    """The stand-in client packs commands with hiredis, byte for byte as redis-py's Python packer."""
    client = make_redis_client(RedisSettings(url="redis://127.0.0.1:1/0"))
    fast = client.connection_pool.connection_class()
    assert type(fast) is not Connection
    args = ("EVALSHA", "ab12", 3, "authgw:{tok}:idem:r-1", b"\x00\xff", "café\x1f7", 1_700_000_000_000)
    assert b"".join(fast.pack_command(*args)) == b"".join(Connection().pack_command(*args))
