"""One issuer host, two protocols: `python -m chaos.bench_iso8583_issuer [--requests N] [--tls]`.

Starts one issuer simulator serving gRPC and ISO 8583 (same books), then sends the same
authorizations through the gateway's gRPC stub and through its ISO 8583 issuer link (two
multiplexed connections, `IsoLinks`), one at a time and then `--concurrency` at once, and
prints mean latency and answers per second for each. Numbers only, no pass/fail: the
machine is shared and noisy; the client's and the simulator's CPU are both in the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from authgw.security import channel_credentials, channel_options, load_tls_files
from authgw.security.server_ssl import client_ssl_context
from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.pki import ISSUER_SERVER_NAME, DevPki
from chaos.processes import ManagedProcess, free_port, start_authgw, wait_for_port
from gateway.edges.iso8583_issuer import IsoLinks
from gateway.edges.iso8583_issuer_link import LinkSettings

__all__ = ["main"]

Send = Callable[[pb.AuthorizeRequest], Awaitable[pb.AuthorizeResponse]]


def _request() -> pb.AuthorizeRequest:
    req = pb.AuthorizeRequest(
        request_id=uuid.uuid4().hex, acquirer_id="1001", pan="4111111111111111", amount_minor=100,
        currency="EUR", mcc="5411", channel=pb.POS_CHIP, merchant_id="M1", terminal_id="T1",
        merchant_country="FR",
    )  # fmt: skip
    req.transmitted_at.GetCurrentTime()
    return req


async def _measure(send: Send, requests: int, concurrency: int) -> tuple[float, float]:
    """(mean ms one at a time, answers/s with `concurrency` in flight)."""
    started = time.perf_counter()
    for _ in range(requests):
        await send(_request())
    sequential_ms = (time.perf_counter() - started) / requests * 1000
    started = time.perf_counter()
    for _ in range(0, requests, concurrency):
        await asyncio.gather(*(send(_request()) for _ in range(concurrency)))
    return sequential_ms, requests / (time.perf_counter() - started)


def _start_sim(workdir: Path, pki: DevPki | None) -> tuple[ManagedProcess, int]:
    port, iso_port = free_port(), free_port()
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", "a1"]
    args += ["--iso8583-listen", f"127.0.0.1:{iso_port}"]
    if pki is not None:
        args += pki.issuer_sim_args("primary")
    proc = start_authgw(workdir, "sim-a1", args, port)
    wait_for_port(iso_port)
    return proc, iso_port


async def _run(args: argparse.Namespace, workdir: Path) -> None:
    pki = DevPki(workdir / "pki") if args.tls else None
    client = pki.files("gateway-client") if pki is not None else None
    sim, iso_port = _start_sim(workdir, pki)
    name = ISSUER_SERVER_NAME.format(pool="primary")
    try:
        if pki is not None and client is not None:
            material = load_tls_files(client)
            options = channel_options(name)
            channel = grpc.aio.secure_channel(sim.address, channel_credentials(material), options=options)
            ssl_context = client_ssl_context(client)
        else:
            channel, ssl_context = grpc.aio.insecure_channel(sim.address), None
        settings = LinkSettings(server_name=name if pki is not None else "")
        link, iso = IsoLinks(settings, lambda: ssl_context).open(f"127.0.0.1:{iso_port}", lambda _r: None)
        grpc_stub = pb_grpc.IssuerHostStub(channel)
        sends: dict[str, Send] = {
            "gRPC IssuerHost": lambda r: grpc_stub.Authorize(r, timeout=5),
            "ISO 8583 link": lambda r: iso.Authorize(r, timeout=5),
        }
        await sends["ISO 8583 link"](_request())  # connections open
        print(f"{args.requests} authorizations per protocol, {'mutual TLS' if args.tls else 'plaintext'}")
        print(f"{'path':<18}{'1 at a time, mean ms':>22}{f'{args.concurrency} in flight, answers/s':>28}")
        for label, send in sends.items():
            sequential_ms, rate = await _measure(send, args.requests, args.concurrency)
            print(f"{label:<18}{sequential_ms:>22.2f}{rate:>28.0f}")
        await link.close()
        await channel.close()
    finally:
        sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.bench_iso8583_issuer", description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--tls", action="store_true", help="mutual TLS on both links")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="authgw-bench-iso-issuer-") as workdir:
        asyncio.run(_run(args, Path(workdir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
