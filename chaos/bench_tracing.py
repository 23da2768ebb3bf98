"""What tracing costs: gateway throughput with traces and metrics exported over OTLP vs telemetry off.

    python -m chaos.bench_tracing [--requests 20000] [--rounds 3] [--clients 8] [--streams 16]

One issuer-sim and one `authgw serve` process per round; an OTLP/gRPC receiver
(chaos.otlp_receiver, counting only) in this process stands in for the
collector. Rounds alternate off / otlp so that a noisy neighbour hurts both
alike; each round starts a fresh gateway, warms it up, then h2load sends the
same authorization (gRPC framing by hand) as fast as the gateway answers.
Reported per mode (median of rounds): requests per second, and the gateway
process's CPU time per request (user + system, exporter threads included,
measured until the receiver has every span of the run; and of that, the main thread's:
the event loop, where spans are built, while OTLP encoding runs on the exporter's
thread). On a shared machine the
CPU figure is the steadier one: throughput of a saturated single-loop gateway
is about 1 / CPU per request.

h2load comes from nghttp2-client (`scripts/ensure-system-deps.sh nghttp2-client`);
without it a closed-loop grpc.aio client is used (it shares the CPU with the
gateway, so its numbers are lower and noisier).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import grpc

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.otlp_receiver import OtlpReceiver
from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_authgw
from chaos.topology import to_toml

__all__ = ["main"]

_METHOD = "/authgw.v1.Authorization/Authorize"
_RATE = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_DONE = re.compile(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed")


def _request() -> pb.AuthorizeRequest:
    return pb.AuthorizeRequest(
        request_id="bench-tracing-1", acquirer_id="1001", pan="4111111111111111", amount_minor=1234,
        currency="EUR", mcc="5411", channel=pb.POS_CHIP, merchant_id="M1", terminal_id="T1",
        merchant_country="FR", pin_verified=True,
    )  # fmt: skip


def _grpc_frame(message: pb.AuthorizeRequest) -> bytes:
    body = message.SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body  # uncompressed flag, big-endian length


# mode -> [telemetry] section (None: no section, and no OTEL_* in the environment: telemetry off)
MODES: dict[str, dict[str, object] | None] = {
    "off": None,
    "traces": {"traces_exporter": "otlp", "metrics_exporter": "none"},
    "metrics": {"traces_exporter": "none", "metrics_exporter": "otlp"},
    "full": {"exporter": "otlp"},
    "sampled": {"exporter": "otlp"},  # with trace_sample_ratio = --sample-ratio
    "traces-sampled": {"traces_exporter": "otlp", "metrics_exporter": "none"},  # ditto
    # tail sampling (authgw.observability.tailsampling) at tail_keep_ratio = --tail-ratio
    "tail": {"exporter": "otlp", "sampling": "tail"},
    "traces-tail": {"traces_exporter": "otlp", "metrics_exporter": "none", "sampling": "tail"},
}
_SAMPLED = {"sampled", "traces-sampled"}
_TAIL = {"tail", "traces-tail"}
# Modes with metrics on are compared with 'metrics' (tracing off, metrics on), the others with 'off'.
_WITH_METRICS = {"full", "sampled", "tail"}


def _gateway(
    workdir: Path, sim: ManagedProcess, endpoint: str, mode: str, args: argparse.Namespace
) -> ManagedProcess:
    port = free_port()
    doc: dict[str, object] = {
        "gateway": {"listen": f"127.0.0.1:{port}", "instance": f"gw-bench-{mode}"},
        **PLAINTEXT,
        "pools": [{"name": "primary", "priority": 1, "members": [{"name": "a1", "address": sim.address}]}],
    }
    section = MODES[mode]
    if section is not None:
        telemetry = {**section, "otlp_endpoint": endpoint, "metric_export_interval": "5s"}
        if mode in _SAMPLED:
            telemetry["trace_sample_ratio"] = args.sample_ratio
        if mode in _TAIL:
            telemetry["tail_keep_ratio"] = args.tail_ratio
        doc["telemetry"] = telemetry
    config = workdir / f"gateway-{mode}.toml"
    config.write_text(to_toml(doc))
    argv = ["serve", "--config", str(config), "--log-level", "WARNING"]
    # off means off even if this shell exports OTEL_* (the other modes' [telemetry] wins over them)
    env = {"OTEL_SDK_DISABLED": "true"} if section is None else None
    return start_authgw(workdir, f"gw-{mode}", argv, port, env=env)


async def _h2load(address: str, frame: Path, requests: int, clients: int, streams: int) -> float:
    argv = [
        "h2load", "-n", str(requests), "-c", str(clients), "-m", str(streams), "-t", "1",
        "-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"http://{address}{_METHOD}",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    rate, done = _RATE.search(text), _DONE.search(text)
    if rate is None or done is None or int(done.group(3)) != 0:
        raise RuntimeError(f"h2load failed:\n{text}")
    return float(rate.group(1))


async def _closed_loop(address: str, requests: int, concurrency: int) -> float:
    request = _request()
    left = requests

    async def worker(stub: pb_grpc.AuthorizationStub) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await stub.Authorize(request, timeout=5)

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AuthorizationStub(channel)
        started = time.monotonic()
        await asyncio.gather(*(worker(stub) for _ in range(concurrency)))
        return requests / (time.monotonic() - started)


async def _check(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        resp = await pb_grpc.AuthorizationStub(channel).Authorize(_request(), timeout=5)
    if resp.source != pb.ISSUER:
        raise RuntimeError(f"gateway did not route to the issuer: {resp}")


def _cpu_s(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of a process (every thread: the exporter's, gRPC's) and of its
    main thread alone (the event loop, whose CPU per request bounds a gateway's throughput)."""

    def seconds(stat: Path) -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    return seconds(Path(f"/proc/{pid}/stat")), seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


async def _settle(receiver: OtlpReceiver, expected_spans: int, timeout_s: float = 8.0) -> None:
    """Wait until the gateway has exported what it traced (its CPU for that counts too)."""
    for _ in range(int(timeout_s / 0.1)):  # the receiver counts; nothing to wait on but time
        if receiver.span_count >= expected_spans:
            return
        await asyncio.sleep(0.1)


async def _round(
    args: argparse.Namespace, workdir: Path, sim: ManagedProcess, receiver: OtlpReceiver, mode: str
) -> tuple[float, float, float]:
    """(requests per second, gateway CPU microseconds per request, of which on the main thread)
    of one fresh gateway."""
    gw = _gateway(workdir, sim, receiver.endpoint, mode, args)
    traced = mode in {"traces", "full"}  # every span expected at the receiver
    try:
        await _check(gw.address)
        frame = workdir / "request.bin"
        frame.write_bytes(_grpc_frame(_request()))
        warmup = args.requests // 5
        if args.h2load:
            await _h2load(gw.address, frame, warmup, args.clients, args.streams)
        else:
            await _closed_loop(gw.address, warmup, args.clients * args.streams)
        await _settle(receiver, receiver.span_count + (2 * (warmup + 1) if traced else 0))
        (before, main_before), spans = _cpu_s(gw.pid), receiver.span_count
        if args.h2load:
            rate = await _h2load(gw.address, frame, args.requests, args.clients, args.streams)
        else:
            rate = await _closed_loop(gw.address, args.requests, args.clients * args.streams)
        await _settle(receiver, spans + (2 * args.requests if traced else 0))
        after, main_after = _cpu_s(gw.pid)
        return rate, (after - before) / args.requests * 1e6, (main_after - main_before) / args.requests * 1e6
    finally:
        await asyncio.to_thread(gw.stop, 10)


async def _bench(args: argparse.Namespace) -> dict[str, list[tuple[float, float, float]]]:
    results: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in args.modes}
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        sim = start_authgw(
            workdir, "sim-a1",
            ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", "a1"], port,
            env={"OTEL_SDK_DISABLED": "true"},  # the same untraced issuer for every mode
        )  # fmt: skip
        try:
            async with OtlpReceiver(keep=False) as receiver:
                for i in range(args.rounds):
                    for mode in args.modes if i % 2 == 0 else args.modes[::-1]:
                        rate, cpu_us, main_us = await _round(args, workdir, sim, receiver, mode)
                        results[mode].append((rate, cpu_us, main_us))
                        print(
                            f"round {i + 1} {mode:>14}: {rate:6.0f} req/s  {cpu_us:5.0f} us CPU/request"
                            f" ({main_us:3.0f} main thread)"
                        )
                print(f"receiver: {receiver.span_count} spans, {receiver.metric_exports} metric exports")
        finally:
            sim.stop()
    return results


def _summary(results: dict[str, list[tuple[float, float, float]]]) -> None:
    """Median per mode with the range over rounds; cost against the baseline paired round by round."""
    print("median per mode (min-max over rounds); cost = throughput lost against the baseline")
    print("('metrics' for modes with metrics on, else 'off'): per round paired, median (range), and by CPU")
    for mode, runs in results.items():
        rates, cpus = [r for r, _, _ in runs], [c for _, c, _ in runs]
        line = f"{mode:>14}: {statistics.median(rates):6.0f} req/s ({min(rates):.0f}-{max(rates):.0f})"
        line += f"  {statistics.median(cpus):5.0f} us CPU/request"
        line += f" ({statistics.median(m for _, _, m in runs):3.0f} main)"
        base = "metrics" if mode in _WITH_METRICS and "metrics" in results else "off"
        if mode != base and base in results:
            paired = [100 * (1 - r / b[0]) for r, b in zip(rates, results[base], strict=True)]
            by_cpu = 100 * (1 - statistics.median(c for _, c, _ in results[base]) / statistics.median(cpus))
            line += (
                f"  cost vs {base} {statistics.median(paired):5.1f} % ({min(paired):.1f}..{max(paired):.1f})"
            )
            line += f", {by_cpu:5.1f} % by CPU"
        print(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.bench_tracing", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20_000, help="measured requests per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds per mode (alternating)")
    p.add_argument("--clients", type=int, default=8, help="h2load connections")
    p.add_argument("--streams", type=int, default=16, help="concurrent streams per connection")
    p.add_argument("--no-h2load", dest="h2load", action="store_false", help="use the Python client")
    p.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        default=["off", "metrics", "tail", "full", "traces-tail", "traces"],
        help="off: no telemetry; traces, metrics: that signal over OTLP; full: both; sampled, "
        "traces-sampled: full, traces with --sample-ratio of traces recorded; tail, traces-tail: "
        "full, traces with tail sampling",
    )
    p.add_argument("--sample-ratio", type=float, default=0.1, help="trace_sample_ratio of the sampled modes")
    p.add_argument("--tail-ratio", type=float, default=0.01, help="tail_keep_ratio of the tail modes")
    args = p.parse_args(argv)
    if args.h2load and shutil.which("h2load") is None:
        print("h2load not found (scripts/ensure-system-deps.sh nghttp2-client): using the Python client")
        args.h2load = False
    results = asyncio.run(_bench(args))
    _summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
