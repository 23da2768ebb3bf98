"""Support for the health tests (no tests here): a fake issuer host's health service and a cuttable proxy."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authgw.security import TlsFiles
from chaos.processes import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def unique_root() -> str:
    """A key root of its own for one test, so tests sharing an etcd never see each other."""
    return f"/t{uuid.uuid4().hex[:10]}"


class HealthHost:
    """A real gRPC server on loopback with only grpc.health.v1.Health, whose status a test flips."""

    def __init__(self) -> None:
        self.port = free_port()
        self.servicer = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(
        self, serving: bool = True, credentials: grpc.ServerCredentials | None = None
    ) -> HealthHost:
        """Serve in plaintext, or with `credentials` (an issuer host's TLS, see tls_credentials)."""
        await self.set_serving(serving)
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        if credentials is None:
            server.add_insecure_port(self.address)
        else:
            server.add_secure_port(self.address, credentials)
        await server.start()
        self._server = server
        return self

    async def set_serving(self, serving: bool) -> None:
        await self.servicer.set("", SERVING if serving else NOT_SERVING)

    async def stop(self) -> None:
        """Stop answering at all (connections refused), as a crashed host would."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace=None)


def tls_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """An issuer host's server credentials: its certificate; clients must present one from `files.ca`."""
    return grpc.ssl_server_credentials(
        [(files.key.read_bytes(), files.cert.read_bytes())],
        root_certificates=files.ca.read_bytes(),
        require_client_auth=True,
    )


class CuttableProxy:
    """A loopback TCP proxy to `target_port`; cut() drops every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    def cut(self) -> None:
        self._open = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self._open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()
        self._writers.discard(dst)
