"""The Python floor: the least a grpc.aio gateway can do, as a benchmark target.

A grpc.aio server with one generic handler: whatever method is called, the
request bytes go to the primary issuer host's `IssuerHost/Authorize` (no
protobuf decode, no validation, no routing, no telemetry), and to the backup
host when the primary attempt fails or times out; the issuer's bytes are the
answer. It runs as authgw does by default (uvloop, one process, plaintext in
the benchmark, the same server options), so authgw's CPU per answer divided by
the floor's is what authgw's own work costs over Python gRPC itself. It is
harness, not product: it decides nothing and has no stand-in.

    python -m chaos.bench_floor --listen 127.0.0.1:7100 --primary 127.0.0.1:7001 --backup 127.0.0.1:7002
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import grpc
import grpc.aio

__all__ = ["FloorForwarder", "main", "serve"]

ISSUER_METHOD = "/authgw.v1.IssuerHost/Authorize"


class FloorForwarder(grpc.GenericRpcHandler):
    """Every unary call: bytes to the primary, then to the backup if the primary failed."""

    def __init__(self, primary: grpc.aio.Channel, backup: grpc.aio.Channel, attempt_timeout_s: float) -> None:
        self._calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            channel.unary_unary(ISSUER_METHOD) for channel in (primary, backup)
        ]
        self._timeout = attempt_timeout_s

    async def _forward(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        primary, backup = self._calls
        try:
            answer: bytes = await primary(request, timeout=self._timeout)
        except grpc.aio.AioRpcError:
            try:
                answer = await backup(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
        return answer

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        return grpc.unary_unary_rpc_method_handler(self._forward)


async def serve(listen: str, primary: str, backup: str, attempt_timeout_s: float) -> None:
    """Serve until SIGTERM/SIGINT."""
    async with (
        grpc.aio.insecure_channel(primary) as to_primary,
        grpc.aio.insecure_channel(backup) as to_backup,
    ):
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0), ("grpc.max_concurrent_streams", 1000)])
        server.add_generic_rpc_handlers((FloorForwarder(to_primary, to_backup, attempt_timeout_s),))
        if server.add_insecure_port(listen) == 0:
            raise SystemExit(f"bench_floor: cannot listen on {listen}")
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(grace=1.0)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.bench_floor", description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, help="host:port to serve on (plaintext)")
    p.add_argument("--primary", required=True, help="primary issuer host, host:port")
    p.add_argument("--backup", required=True, help="backup issuer host, host:port")
    p.add_argument("--attempt-timeout-ms", type=int, default=400, help="per-attempt timeout (as authgw's)")
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    a = p.parse_args(argv)
    if not a.no_uvloop:
        import uvloop  # noqa: PLC0415 (as `authgw serve`: optional speed-up, imported when used)

        uvloop.install()
    asyncio.run(serve(a.listen, a.primary, a.backup, a.attempt_timeout_ms / 1000.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
