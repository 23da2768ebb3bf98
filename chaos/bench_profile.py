"""Where the gateway's CPU goes under h2load: py-spy samples of the gateway process, summed up.

Starts the benchmark's issuer hosts and gateway (chaos.bench_rig, no
proxies), drives the gateway with h2load, records it with py-spy (a
development tool: `.venv/bin/pip install py-spy`; not a project dependency)
and prints the functions with the most samples, by own time and including
callees. The raw collapsed stacks are kept for flame graphs.

    python -m chaos.bench_profile [--seconds 10] [--native] [--target authgw|floor] [--output FILE]

`--target floor` records the Python floor (chaos.bench_floor) instead: what
both share (grpc's poller thread, calls to the issuer) is the floor; what only
the gateway's profile shows is authgw's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chaos.bench_h2load import H2LoadResult, bench_request, grpc_frame, run_h2load
from chaos.bench_rig import BenchRig

__all__ = ["main", "top_functions"]

REPORT = Path(__file__).resolve().parent / "reports" / "gateway-profile.txt"
# Frames every stack of the gateway's main thread starts with: the interpreter and asyncio's runner.
_ROOT_FRAMES = ("_run_module_as_main", "_run_code", "<module>", "main", "run", "Runner.run")


def top_functions(
    collapsed: str, limit: int = 25
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, then (function, samples) by own time and by time including callees."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            if frame.split(" ")[0] not in _ROOT_FRAMES:
                inclusive[frame] += count
    return total, own.most_common(limit), inclusive.most_common(limit)


def _table(title: str, rows: list[tuple[str, int]], total: int) -> Table:
    table = Table(title=title)
    table.add_column("share", justify="right")
    table.add_column("samples", justify="right")
    table.add_column("function (file)")
    for name, count in rows:
        table.add_row(f"{count / total:.1%}", str(count), name)
    return table


async def profile(
    py_spy: str, seconds: float, native: bool, output: Path, target: str = "authgw"
) -> H2LoadResult:
    """Record the gateway with py-spy into `output` while h2load drives it; return h2load's result."""
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-profile-"))
    rig = BenchRig(workdir, proxies=False)
    try:
        await asyncio.to_thread(rig.start)
        gateway = rig.targets[target]
        assert gateway.process is not None
        await rig.wait_ready(gateway)
        body = workdir / "authorize.grpc"
        body.write_bytes(grpc_frame(bench_request().SerializeToString()))
        load = asyncio.ensure_future(run_h2load(gateway.url, body, duration_s=seconds + 4, warmup_s=0))
        await asyncio.sleep(2.0)  # connections up, steady state
        argv = [py_spy, "record", "--pid", str(gateway.process.pid), "--duration", f"{seconds:g}"]
        argv += ["--rate", "200", "--format", "raw", "--nolineno", "-o", str(output)]
        argv += ["--native"] if native else []
        output.parent.mkdir(parents=True, exist_ok=True)
        spy = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await spy.wait()
        result = await load
    finally:
        await asyncio.to_thread(rig.stop)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.bench_profile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling duration")
    parser.add_argument("--native", action="store_true", help="include C/Cython frames (grpc core)")
    parser.add_argument("--output", type=Path, default=REPORT, help="raw collapsed stacks")
    parser.add_argument("--target", choices=("authgw", "floor"), default="authgw", help="process to record")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    result = asyncio.run(profile(py_spy, args.seconds, args.native, args.output, args.target))
    total, own, inclusive = top_functions(args.output.read_text())
    console = Console(width=max(160, shutil.get_terminal_size().columns))
    console.print(f"h2load through {args.target}: {result.rps:.0f} req/s; {total} samples; {args.output}")
    console.print(_table("gateway: own time (leaf frames)", own, max(1, total)))
    console.print(_table("gateway: time including callees", inclusive, max(1, total)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
