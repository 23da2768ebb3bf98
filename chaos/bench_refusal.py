"""What a refusal costs next to an answer: the number that bounds goodput under overload.

Three gateways in front of the same issuer hosts, driven by h2load in
interleaved rounds, CPU per request of each:

- answer: admission off, every request answered by an issuer;
- refuse-python: an adaptive limit fixed at 1, so nearly every request is
  refused RESOURCE_EXHAUSTED by the servicer (gateway/admission.py);
- refuse-grpc: admission off and grpc's `maximum_concurrent_rpcs` = 1, so
  nearly every request is refused by grpc's Cython layer before our code.

A process offered `k` times what it can answer, with refusals costing `r` of
an answer, answers at most (1 - k r) / (1 - r) of its saturation throughput
(CPU: answered x 1 + refused x r <= saturation). h2load sees HTTP statuses
only, which is fine here: the CPU per request is what is measured.

    python -m chaos.bench_refusal [--rounds 5] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from chaos.bench_h2load import bench_request, grpc_frame, run_h2load
from chaos.bench_openloop import METHOD_GATEWAY
from chaos.bench_rig import BenchRig, Target

__all__ = ["GATEWAYS", "main"]

GATEWAYS: dict[str, dict[str, object]] = {
    "answer": {"enabled": False, "hard_limit": 0},
    "refuse-python": {"enabled": True, "initial_limit": 1, "min_limit": 1, "max_limit": 1, "hard_limit": 0},
    "refuse-grpc": {"enabled": False, "hard_limit": 1},
}


async def measure(rounds: int, seconds: float, workdir: Path) -> dict[str, list[float]]:
    """CPU microseconds per request of each gateway, one figure per round."""
    rig = BenchRig(workdir, proxies=False)
    await asyncio.to_thread(rig.start)
    try:
        targets = []
        for name, admission in GATEWAYS.items():
            proc = await asyncio.to_thread(rig.extra_gateway, name, admission)
            targets.append(Target(name, proc.address, METHOD_GATEWAY, proc))
        await rig.wait_ready(targets[0])
        body = workdir / "authorize.grpc"
        body.write_bytes(grpc_frame(bench_request().SerializeToString()))
        cpu: dict[str, list[float]] = {t.name: [] for t in targets}
        for n in range(rounds):
            for target in targets if n % 2 == 0 else list(reversed(targets)):
                before = target.cpu_s()
                result = await run_h2load(target.url, body, duration_s=seconds, warmup_s=0)
                cpu[target.name].append((target.cpu_s() - before) / max(1, result.requests) * 1e6)
    finally:
        await asyncio.to_thread(rig.stop)
    return cpu


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.bench_refusal", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--seconds", type=float, default=4.0, help="h2load duration per gateway per round")
    a = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-refusal-"))
    try:
        cpu = asyncio.run(measure(a.rounds, a.seconds, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    answer = statistics.median(cpu["answer"])
    for name, values in cpu.items():
        med = statistics.median(values)
        print(
            f"{name:<14} CPU per request {med:4.0f} us (min {min(values):.0f}, max {max(values):.0f}; "
            f"{len(values)} rounds) = {med / answer:.2f} of an answer"
        )
    for name in ("refuse-python", "refuse-grpc"):
        r = statistics.median(cpu[name]) / answer
        print(f"at 2x saturation with {name}: at most {max(0.0, (1 - 2 * r) / (1 - r)):.0%} goodput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
