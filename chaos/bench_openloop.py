"""Open-loop latency load for the benchmark: any Authorize method, spread over processes.

`chaos.load.run_open_loop` drives the gateway's Authorization service from
one process. The benchmark also calls issuer hosts and proxies in front of
them (`authgw.v1.IssuerHost/Authorize`, the same messages), needs every target
driven by the very same client code, and needs rates that one Python process
cannot sustain on a busy machine. So a run is split into `shares` interleaved
schedules (share k sends requests k, k+n, k+2n, ...), each in its own process
started from a shared wall-clock instant; their samples are merged.

Samples are `chaos.load.Sample`s, so `chaos.report.summarize` reads them.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from authgw.v1 import authorization_pb2 as pb
from chaos.load import CardMix, Sample

__all__ = ["METHOD_GATEWAY", "METHOD_ISSUER", "LoadPool", "LoadResult", "LoadSpec", "run_share"]

METHOD_GATEWAY = "/authgw.v1.Authorization/Authorize"
METHOD_ISSUER = "/authgw.v1.IssuerHost/Authorize"


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


async def run_share(spec: LoadSpec, start_at: float, index: int, shares: int) -> tuple[list[Sample], float]:
    """Send share `index` of `shares` of the schedule, starting at wall-clock `start_at`."""
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
        await asyncio.wait_for(channel.channel_ready(), timeout=5.0)
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


def _share_in_process(spec: LoadSpec, start_at: float, index: int, shares: int) -> tuple[list[Sample], float]:
    import uvloop  # noqa: PLC0415  # only the worker processes run on uvloop

    return uvloop.run(run_share(spec, start_at, index, shares))


def _warm() -> None:
    time.sleep(0.3)  # keeps the first worker busy so that the next submit spawns another


class LoadPool:
    """Worker processes (spawned: the parent holds gRPC state that must not be forked) for open loops."""

    def __init__(self, workers: int = 2, rate_per_process: float = 1000.0) -> None:
        self.workers = workers
        self.rate_per_process = rate_per_process
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    async def start(self) -> LoadPool:
        """Spawn every worker now, so that runs start on time."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._pool, _warm) for _ in range(self.workers)))
        return self

    def shares_for(self, rate_per_s: float) -> int:
        return max(1, min(self.workers, math.ceil(rate_per_s / self.rate_per_process)))

    async def run(self, spec: LoadSpec, start_at: float | None = None) -> LoadResult:
        """Run `spec` over as many workers as its rate needs, from wall-clock start_at (default: in 0.5 s)."""
        loop = asyncio.get_running_loop()
        shares = self.shares_for(spec.rate_per_s)
        start_at = time.time() + 0.5 if start_at is None else start_at
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._pool, _share_in_process, spec, start_at, k, shares)
                for k in range(shares)
            )
        )
        samples = sorted((s for part, _ in parts for s in part), key=lambda s: s.sent_at)
        return LoadResult(samples, max(lag for _, lag in parts))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> LoadPool:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
