"""Open-loop latency load for the benchmark: any Authorize method, spread over processes.

`chaos.load.run_open_loop` drives the gateway's Authorization service from
one process. The benchmark also calls issuer hosts and proxies in front of
them (`authgw.v1.IssuerHost/Authorize`, the same messages), needs every target
driven by the very same client code, and needs rates that one Python process
cannot sustain on a busy machine. So a run is split into `shares` interleaved
schedules (share k sends requests k, k+n, k+2n, ...), each in a fresh worker
process (`python -m chaos.bench_openloop`, on uvloop):

    parent                          worker k
    spawn(spec, k, n)  ───────────► connect, wait for the channel
                       ◄─────────── "ready"
    start_at (wall clock) ────────► send its share of the schedule from start_at
                       ◄─────────── samples (one JSON line), exit

A fresh process per run keeps one run's gRPC state (and any crash of it)
out of the next. Samples are `chaos.load.Sample`s, so `chaos.report.summarize`
reads them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from authgw.v1 import authorization_pb2 as pb
from chaos.load import CardMix, Sample

__all__ = [
    "METHOD_GATEWAY",
    "METHOD_ISSUER",
    "LoadPool",
    "LoadResult",
    "LoadRun",
    "LoadSpec",
    "LoadWorkerError",
    "run_share",
]

METHOD_GATEWAY = "/authgw.v1.Authorization/Authorize"
METHOD_ISSUER = "/authgw.v1.IssuerHost/Authorize"
_READY = "ready"
_SPAWN_TIMEOUT_S = 30.0


class LoadWorkerError(RuntimeError):
    """A load worker process failed to start, to connect, or to report its samples."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One open-loop run against one target."""

    target: str  # host:port
    method: str  # full gRPC method path
    rate_per_s: float
    duration_s: float
    deadline_s: float = 2.0
    seed: int = 7


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Merged samples of every share, ordered by send time, and how late the senders ran."""

    samples: list[Sample]
    max_lag_s: float  # worst delay of a send behind its schedule: large means the generator saturated


async def _call(call: Any, req: pb.AuthorizeRequest, sample: Sample, deadline_s: float) -> None:
    start = time.monotonic()
    try:
        resp: pb.AuthorizeResponse = await call(req, timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        sample.status = exc.code().name
        return
    sample.latency_s = time.monotonic() - start
    sample.response_code = resp.response_code
    sample.source = pb.Source.Name(resp.source)
    sample.pool = resp.pool
    sample.standin_reason = pb.StandInReason.Name(resp.standin_reason)
    sample.approved = resp.decision == pb.APPROVED


async def run_share(
    spec: LoadSpec, index: int, shares: int, start_at: float | None = None
) -> tuple[list[Sample], float]:
    """Send share `index` of `shares` of the schedule from wall-clock `start_at`.

    With start_at None, print "ready" once connected and read start_at from stdin.
    """
    mix = CardMix(cards=500, seed=spec.seed * 1000 + index, prefix=f"b{spec.seed}-{index}-{time.time_ns()}")
    interval = 1.0 / spec.rate_per_s
    total = int(spec.rate_per_s * spec.duration_s)
    samples: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()
    max_lag = 0.0
    async with grpc.aio.insecure_channel(spec.target) as channel:
        call = channel.unary_unary(
            spec.method,
            request_serializer=pb.AuthorizeRequest.SerializeToString,
            response_deserializer=pb.AuthorizeResponse.FromString,
        )
        await asyncio.wait_for(channel.channel_ready(), timeout=10.0)
        if start_at is None:
            print(_READY, flush=True)
            start_at = float(await asyncio.to_thread(sys.stdin.readline))
        # Translate the shared wall-clock start into this process's monotonic clock.
        t0 = time.monotonic() + (start_at - time.time())
        for i in range(index, total, shares):
            due = t0 + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                max_lag = max(max_lag, -delay)
            req = mix.request()
            sample = Sample(req.request_id, time.monotonic() - t0, amount_minor=req.amount_minor)
            samples.append(sample)
            task = asyncio.create_task(_call(call, req, sample, spec.deadline_s))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    return samples, max_lag


class LoadRun:
    """The worker processes of one run: connected and waiting until `start`."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self._procs = procs
        self.start_at = 0.0

    def start(self, delay_s: float = 0.2) -> float:
        """Release every worker at the same wall-clock instant, delay_s from now; return it."""
        self.start_at = time.time() + delay_s
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{self.start_at!r}\n".encode())
        return self.start_at

    async def result(self) -> LoadResult:
        """Wait for every worker's samples."""
        parts = await asyncio.gather(*(self._collect(p) for p in self._procs))
        samples = sorted((s for part, _ in parts for s in part), key=lambda s: s.sent_at)
        return LoadResult(samples, max(lag for _, lag in parts))

    @staticmethod
    async def _collect(proc: asyncio.subprocess.Process) -> tuple[list[Sample], float]:
        assert proc.stdout is not None
        out = await proc.stdout.read()
        code = await proc.wait()
        if code != 0 or not out.strip():
            raise LoadWorkerError(f"load worker {proc.pid} exited with {code} (its stderr is above)")
        doc = json.loads(out)
        return [Sample(**fields) for fields in doc["samples"]], float(doc["max_lag_s"])

    async def kill(self) -> None:
        """Stop the workers (only after a failure); safe to call twice."""
        for proc in self._procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class LoadPool:
    """Starts worker processes for open-loop runs (as many as a run's rate needs, up to `workers`)."""

    def __init__(self, workers: int = 2, rate_per_process: float = 1000.0) -> None:
        self.workers = workers
        self.rate_per_process = rate_per_process

    def shares_for(self, rate_per_s: float) -> int:
        return max(1, min(self.workers, math.ceil(rate_per_s / self.rate_per_process)))

    async def launch(self, spec: LoadSpec) -> LoadRun:
        """Start the workers for `spec` and wait until each is connected to the target."""
        shares = self.shares_for(spec.rate_per_s)
        arg = json.dumps(dataclasses.asdict(spec))
        procs = []
        for k in range(shares):
            argv = ["-m", "chaos.bench_openloop", arg, str(k), str(shares)]
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
                )
            )
        run = LoadRun(procs)
        try:
            await asyncio.wait_for(asyncio.gather(*(self._ready(p) for p in procs)), _SPAWN_TIMEOUT_S)
        except BaseException:
            await run.kill()
            raise
        return run

    @staticmethod
    async def _ready(proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode().strip()
        if line != _READY:
            raise LoadWorkerError(f"load worker {proc.pid} did not get ready (said {line!r})")

    async def run(self, spec: LoadSpec, retries: int = 1) -> LoadResult:
        """Launch, start at once, and collect; a run whose worker crashed is run again (`retries` times)."""
        for attempt in range(retries + 1):
            run: LoadRun | None = None
            try:
                run = await self.launch(spec)
                run.start()
                return await run.result()
            except LoadWorkerError as exc:
                if run is not None:
                    await run.kill()
                if attempt == retries:
                    raise
                print(f"bench: {exc}; running it again", file=sys.stderr)
        raise AssertionError("unreachable")


def _worker(argv: Sequence[str]) -> int:
    spec = LoadSpec(**json.loads(argv[0]))
    index, shares = int(argv[1]), int(argv[2])
    import uvloop  # noqa: PLC0415  # only the worker processes run on uvloop

    samples, max_lag = uvloop.run(run_share(spec, index, shares))
    doc = {"samples": [dataclasses.asdict(s) for s in samples], "max_lag_s": max_lag}
    sys.stdout.write(json.dumps(doc, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
