"""Closed-loop throughput with h2load (nghttp2): gRPC calls as raw HTTP/2 POSTs.

h2load knows nothing of gRPC, so the request body is one gRPC message frame
written to a file (1 byte "not compressed", 4 bytes big-endian length, the
serialized AuthorizeRequest) and the gRPC headers are added by hand. Every
call carries the same request_id, which issuer hosts answer idempotently:
fine for throughput. h2load counts HTTP statuses only, never grpc-status, so
the caller cross-checks what reached the issuer hosts. h2load's own req/s
counts failed requests too (a proxy with no live upstream answers 502 very
fast), so throughput here is successful answers per second.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from authgw.v1 import authorization_pb2 as pb

__all__ = ["H2LoadError", "H2LoadResult", "bench_request", "grpc_frame", "parse_h2load", "run_h2load"]

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


class H2LoadError(RuntimeError):
    """h2load is missing, failed, or printed something we cannot read."""


@dataclass(frozen=True, slots=True)
class H2LoadResult:
    """What one h2load run measured."""

    completed_rps: float  # h2load's figure: every completed request, failures (5xx) included
    requests: int
    succeeded: int  # HTTP 2xx/3xx answers (grpc-status is not seen by h2load)
    failed: int
    errored: int
    timeouts: int
    duration_s: float

    @property
    def rps(self) -> float:
        """Successful (HTTP 2xx/3xx) answers per second."""
        return self.succeeded / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def failed_share(self) -> float:
        return (self.requests - self.succeeded) / self.requests if self.requests else 0.0


def bench_request(request_id: str = "bench-h2load-1") -> pb.AuthorizeRequest:
    """A valid authorization (well-known test PAN with funds), as the load body."""
    return pb.AuthorizeRequest(
        request_id=request_id,
        acquirer_id="1001",
        pan="4111111111111111",
        amount_minor=1234,
        currency="EUR",
        mcc="5411",
        channel=pb.POS_CHIP,
        merchant_id="M0001",
        terminal_id="T001",
        merchant_country="FR",
        pin_verified=True,
    )


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: uncompressed flag, big-endian length, bytes."""
    return struct.pack(">BI", 0, len(message)) + message


_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout"
)


def parse_h2load(output: str) -> H2LoadResult:
    """Read the summary lines of h2load's output."""
    finished, requests = _FINISHED.search(output), _REQUESTS.search(output)
    if finished is None or requests is None:
        raise H2LoadError(f"unexpected h2load output:\n{output[-2000:]}")
    duration = float(finished.group(1)) / (1000.0 if finished.group(2) == "ms" else 1.0)
    total, ok, failed, errored, timeouts = (int(g) for g in requests.groups())
    return H2LoadResult(float(finished.group(3)), total, ok, failed, errored, timeouts, duration)


async def run_h2load(
    url: str,
    body: Path,
    *,
    clients: int = 8,
    streams: int = 32,
    duration_s: float = 10.0,
    warmup_s: float = 1.0,
) -> H2LoadResult:
    """POST `body` to `url` (h2c, prior knowledge) for duration_s after warmup_s."""
    binary = shutil.which("h2load")
    if binary is None:
        raise H2LoadError("h2load not found on PATH: run scripts/ensure-system-deps.sh nghttp2-client")
    argv = [binary, "-c", str(clients), "-m", str(streams), "-t", "1", "-d", str(body)]
    argv += ["-D", f"{duration_s:g}", f"--warm-up-time={warmup_s:g}"]
    for header in GRPC_HEADERS:
        argv += ["-H", header]
    proc = await asyncio.create_subprocess_exec(
        *argv, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=duration_s + warmup_s + 30.0)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise H2LoadError(f"h2load did not finish: {url}") from None
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise H2LoadError(f"h2load exited with {proc.returncode}:\n{text[-2000:]}")
    return parse_h2load(text)
