"""CPU per authorization through the gateway: ISO 8583 listener vs gRPC port, same issuer, interleaved rounds.

    python -m chaos.bench_iso8583_edge [--rounds 5] [--requests 2000] [--in-flight 32]

One issuer simulator process and one gateway process (`authgw serve`, plaintext on both edges
so that the comparison is the protocol's, not TLS's; `make bench-tls` measures TLS) with
`[iso8583_listen]`. Each round sends `--requests` authorizations through the gRPC port (one
channel, `--in-flight` calls at once) and as many 0100s through the ISO 8583 listener (one
connection, as many in flight), alternating which goes first, and charges each path the gateway
process's CPU (utime + stime from /proc) over its run. Prints the median and the spread (min -
max) of microseconds of gateway CPU per answer, and answers/s, per path. Numbers only: the
machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc

from authgw.iso8583 import Framing, Message, Spec, read_frame
from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.bench_cpu import cpu_seconds
from chaos.pki import PLAINTEXT
from chaos.processes import ManagedProcess, free_port, start_authgw, wait_for_port
from chaos.topology import to_toml

__all__ = ["main"]

SPEC, FRAMING = Spec(), Framing()
PAN = "4111111111111111"


def start(workdir: Path) -> tuple[ManagedProcess, ManagedProcess, int, int]:
    """The simulator and the gateway; the gateway's gRPC and ISO 8583 ports."""
    sim_port, grpc_port, iso_port = free_port(), free_port(), free_port()
    sim = start_authgw(
        workdir,
        "bench-sim",
        ["issuer-sim", "--listen", f"127.0.0.1:{sim_port}", "--pool", "p", "--member", "a1"],
        sim_port,
    )
    doc = {
        "gateway": {"listen": f"127.0.0.1:{grpc_port}", "instance": "gw-bench"},
        **PLAINTEXT,
        "iso8583_listen": {"listen": f"127.0.0.1:{iso_port}"},
        "pools": [{"name": "p", "priority": 1, "members": [{"name": "a1", "address": sim.address}]}],
    }
    (workdir / "gateway.toml").write_text(to_toml(doc))
    gateway = start_authgw(
        workdir, "bench-gw", ["serve", "--config", str(workdir / "gateway.toml")], grpc_port
    )
    wait_for_port(iso_port)
    return sim, gateway, grpc_port, iso_port


async def grpc_run(port: int, count: int, in_flight: int) -> int:
    """`count` authorizations over one channel, `in_flight` at a time; how many were approved."""
    approved = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AuthorizationStub(channel)
        slots = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            nonlocal approved
            request = pb.AuthorizeRequest(
                request_id=uuid.uuid4().hex, acquirer_id="1001", pan=PAN, amount_minor=100 + i % 50,
                currency="EUR", mcc="5411", channel=pb.POS_CHIP, merchant_id="M1", terminal_id="T1",
                merchant_country="FR",
            )  # fmt: skip
            async with slots:
                response = await stub.Authorize(request, timeout=10)
            approved += response.response_code == "00"

        await asyncio.gather(*(one(i) for i in range(count)))
    return approved


def iso_request(stan: int, now: datetime) -> bytes:
    fields: dict[int, str | bytes] = {
        2: PAN, 3: "000000", 4: f"{100 + stan % 50:012d}", 7: now.strftime("%m%d%H%M%S"), 11: f"{stan:06d}",
        12: now.strftime("%H%M%S"), 13: now.strftime("%m%d"), 18: "5411", 22: "051", 32: "1001",
        37: f"{stan:012d}", 41: "TERM0001", 42: "MERCHANT0000001", 49: "978",
    }  # fmt: skip
    payload = Message("0100", fields).encode(SPEC)
    return len(payload).to_bytes(2, "big") + payload


async def iso_run(port: int, count: int, in_flight: int, first_stan: int) -> int:
    """`count` 0100s over one connection, `in_flight` at a time; how many were approved."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    now = datetime.now(UTC)
    sent = approved = 0
    try:
        while sent < min(in_flight, count):
            writer.write(iso_request(first_stan + sent, now))
            sent += 1
        for _ in range(count):
            frame = await read_frame(reader, FRAMING, idle_timeout_s=10.0)
            approved += Message.decode(frame.payload, SPEC).text(39) == "00"
            if sent < count:
                writer.write(iso_request(first_stan + sent, now))
                sent += 1
        return approved
    finally:
        writer.close()


async def measure(
    args: argparse.Namespace, gateway: ManagedProcess, grpc_port: int, iso_port: int
) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {"grpc": [], "iso8583": []}
    stan = 1
    await grpc_run(grpc_port, 200, args.in_flight)  # warm both paths up
    await iso_run(iso_port, 200, args.in_flight, 900_000)
    for round_ in range(args.rounds):
        order = ["grpc", "iso8583"] if round_ % 2 == 0 else ["iso8583", "grpc"]
        for path in order:
            cpu0, t0 = cpu_seconds(gateway.pid), time.perf_counter()
            if path == "grpc":
                approved = await grpc_run(grpc_port, args.requests, args.in_flight)
            else:
                approved = await iso_run(iso_port, args.requests, args.in_flight, stan)
                stan += args.requests
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds(gateway.pid) - cpu0
            if approved != args.requests:  # an attempt timeout on a loaded machine: 91, still an answer
                print(f"round {round_ + 1} {path}: {args.requests - approved} not approved", flush=True)
            results[path].append((cpu / args.requests * 1e6, args.requests / elapsed))
    return results


def report(results: dict[str, list[tuple[float, float]]]) -> None:
    print("| path | gateway CPU us per answer: median (min - max) | answers/s: median (min - max) |")
    print("|---|---|---|")
    for path, samples in results.items():
        cpu, rate = [s[0] for s in samples], [s[1] for s in samples]
        print(
            f"| {path} | {statistics.median(cpu):.0f} ({min(cpu):.0f} - {max(cpu):.0f}) | "
            f"{statistics.median(rate):.0f} ({min(rate):.0f} - {max(rate):.0f}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to keep the topology up (profiling)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-iso8583-") as tmp:
        sim, gateway, grpc_port, iso_port = start(Path(tmp))
        try:
            print(f"gateway pid {gateway.pid}, gRPC :{grpc_port}, ISO 8583 :{iso_port}", flush=True)
            report(asyncio.run(measure(args, gateway, grpc_port, iso_port)))
            time.sleep(args.hold)
        finally:
            gateway.stop()
            sim.stop()


if __name__ == "__main__":
    main()
