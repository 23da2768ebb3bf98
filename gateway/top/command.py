"""`authgw top`: a live terminal view of one gateway or a fleet, refreshed every second.

    authgw top --metrics http://127.0.0.1:9464/metrics [--metrics URL ...]
               [--etcd URL[,URL] --etcd-cert F --etcd-key F --etcd-ca F | --etcd-insecure]
               [--config gateway.toml] [--interval 1] [--once]

It reads only what the gateways already export: their Prometheus endpoints (rates and p99 are
computed over the interval between two scrapes: gateway/top/rates.py), and, when asked, etcd
(the mode an operator set, registered members, the fleet) with the same TLS flags as `authgw
pools`, and the stand-in Redis journal through the gateway's config file as `authgw standin
status` does (its `[redis.operator]` login). `--once` prints one frame after one interval and
exits (scripts, tests). Exit status: 0, or 2 for bad usage (the message names the flag).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.live import Live

from authgw.config import ConfigError
from authgw.observability import LogFormat, configure_logging
from authgw.security import PlaintextWarning, SecurityError
from gateway.standin_cmd import load_standin_for_operator
from gateway.top.model import gateway_view
from gateway.top.render import Frame, render
from gateway.top.scrape import Scrape, fetch
from gateway.top.sources import EtcdSource, RedisSource
from health.endpoints import parse_endpoints
from health.errors import InvalidName
from health.etcd import EtcdClient
from health.keys import DEFAULT_ROOT, KeyLayout
from health.tls_flags import add_tls_flags, server_name, transport_security
from standin.errors import ConfigError as StandInConfigError

__all__ = ["main"]


class UsageError(ValueError):
    """A flag's value cannot be used; the message names the flag."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="authgw top", description="live view of authgw gateways")
    p.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="URL",
        help="a gateway's Prometheus endpoint, e.g. http://127.0.0.1:9464/metrics (repeat for a fleet;"
        " default: $AUTHGW_METRICS, comma-separated)",
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame after one interval, then exit")
    p.add_argument("--scrape-timeout", type=float, default=2.0, help="deadline of one scrape in seconds")
    p.add_argument("--etcd", default=os.environ.get("AUTHGW_ETCD"), help="etcd URLs (default: $AUTHGW_ETCD;"
                   " none: etcd is not read)")  # fmt: skip
    p.add_argument("--key-root", default=DEFAULT_ROOT, help="etcd key root (default: %(default)s)")
    add_tls_flags(p, "etcd", "etcd", env="AUTHGW_ETCD")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the gateway's TOML config: read the stand-in Redis journal as `authgw standin status` does",
    )
    return p


def _urls(args: argparse.Namespace) -> list[str]:
    urls = list(args.metrics) or [u for u in os.environ.get("AUTHGW_METRICS", "").split(",") if u]
    if not urls:
        raise UsageError("--metrics URL missing: give a gateway's Prometheus endpoint (repeat for a fleet)")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--metrics {url!r}: expected http(s)://host:port/metrics")
    if not args.interval > 0:
        raise UsageError(f"--interval {args.interval}: must be a number of seconds above 0")
    return urls


def _etcd(args: argparse.Namespace) -> EtcdSource | None:
    if not args.etcd:
        return None
    client = EtcdClient(
        parse_endpoints(args.etcd),
        request_timeout_s=min(2.0, args.interval),
        security=transport_security(args, "etcd"),
        server_name=server_name(args, "etcd"),
    )
    return EtcdSource(client, KeyLayout(args.key_root))


async def _scrape_all(urls: Sequence[str], timeout_s: float) -> list[Scrape]:
    return list(await asyncio.gather(*(asyncio.to_thread(fetch, url, timeout_s) for url in urls)))


async def frames(
    urls: Sequence[str],
    interval_s: float,
    *,
    etcd: EtcdSource | None = None,
    redis: RedisSource | None = None,
    scrape_timeout_s: float = 2.0,
) -> AsyncIterator[Frame]:
    """One frame per interval, from the second scrape on (a rate needs two)."""
    loop = asyncio.get_running_loop()
    prev = await _scrape_all(urls, scrape_timeout_s)
    while True:
        await asyncio.sleep(max(0.0, prev[0].at + interval_s - loop.time()))
        cur = await _scrape_all(urls, scrape_timeout_s)
        views = [gateway_view(a, b) for a, b in zip(prev, cur, strict=True)]
        yield Frame(
            datetime.now(UTC),
            views,
            etcd=await etcd.read() if etcd is not None else None,
            journal=await redis.read() if redis is not None else None,
        )
        prev = cur


async def _run(args: argparse.Namespace, urls: list[str], console: Console) -> int:
    etcd = _etcd(args)
    redis = RedisSource(load_standin_for_operator(args.config)) if args.config is not None else None
    async with contextlib.AsyncExitStack() as stack:
        if etcd is not None:
            await stack.enter_async_context(etcd.client)
            await stack.enter_async_context(PlaintextWarning(etcd.client.security, "etcd (top)"))
        if redis is not None:
            await redis.start()
            stack.push_async_callback(redis.close)
        stream = frames(urls, args.interval, etcd=etcd, redis=redis, scrape_timeout_s=args.scrape_timeout)
        if args.once:
            console.print(render(await anext(stream)))
            return 0
        with Live(console=console, auto_refresh=False, screen=False) as live:
            async for frame in stream:
                live.update(render(frame), refresh=True)
    return 0


def main(argv: list[str]) -> int:
    """Entry point; argv[0] is "top"."""
    args = _parser().parse_args(argv[1:])
    configure_logging(LogFormat.TEXT, os.environ.get("AUTHGW_LOG_LEVEL", "WARNING"))
    console = Console()
    try:
        urls = _urls(args)
        return asyncio.run(_run(args, urls, console))
    except (UsageError, InvalidName, SecurityError, ConfigError, StandInConfigError) as exc:
        print(f"authgw top: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
