"""The benchmark machinery end to end at tiny scale: processes, h2load, open loop, outage, JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from authgw.v1 import authorization_pb2 as pb
from chaos.bench_h2load import bench_request, grpc_frame, parse_h2load
from chaos.bench_ratio import CpuRatio, RatioRound

_TOOLS = ("h2load", "nginx", "haproxy")
_MISSING = [t for t in _TOOLS if shutil.which(t) is None]

_H2LOAD_OUTPUT = """
finished in 5.00s, 3182.00 req/s, 374.75KB/s
requests: 15910 total, 16166 started, 15910 done, 15900 succeeded, 10 failed, 0 errored, 0 timeout
status codes: 15900 2xx, 0 3xx, 0 4xx, 10 5xx
"""


def test_grpc_frame_prefixes_an_uncompressed_length() -> None:
    """A gRPC message frame is flag 0, a 4-byte big-endian length, then the message."""
    message = bench_request().SerializeToString()
    frame = grpc_frame(message)
    assert frame[0] == 0
    assert int.from_bytes(frame[1:5], "big") == len(message)
    assert pb.AuthorizeRequest.FromString(frame[5:]).pan == "4111111111111111"


def test_parse_h2load_reads_rate_and_counts() -> None:
    """h2load's summary lines give the duration and counts; throughput counts successes only."""
    result = parse_h2load(_H2LOAD_OUTPUT)
    assert (result.completed_rps, result.duration_s) == (3182.0, 5.0)
    assert (result.requests, result.succeeded, result.failed) == (15910, 15900, 10)
    assert result.rps == 15900 / 5.0  # successful answers only: fast 5xx must not count as throughput


@pytest.mark.skipif(bool(_MISSING), reason=f"needs {', '.join(_MISSING)}: scripts/ensure-system-deps.sh")
def test_bench_runs_end_to_end_and_writes_results(tmp_path: Path) -> None:
    """`python -m chaos.bench` at tiny scale measures five targets and the floor ratio, writes the JSON."""
    output = tmp_path / "results.json"
    argv = [sys.executable, "-m", "chaos.bench", "--runs", "1", "--rates", "100", "--h2load-seconds", "1"]
    argv += ["--latency-seconds", "1", "--warmup-seconds", "0.2", "--fault-seconds", "1"]
    argv += ["--failover-rate", "100", "--cpu-rounds", "2", "--cpu-seconds", "1", "--output", str(output)]
    argv += ["--overload-rounds", "1", "--overload-seconds", "1", "--overload-factor", "0.2"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    doc = json.loads(output.read_text())
    assert set(doc) == {"machine", "runs", "targets", "authgw_cpu_over_floor", "overload"}
    assert isinstance(doc["machine"], str) and doc["machine"]
    assert doc["runs"] == 1
    assert set(doc["targets"]) == {"direct", "floor", "authgw", "nginx", "haproxy"}
    for name, t in doc["targets"].items():
        assert set(t) == {"rps", "latency_ms", "cpu_s_per_1k", "failover"}, name
        assert isinstance(t["rps"], float) and t["rps"] > 0, name
        assert set(t["latency_ms"]) == {"100"}, name
        assert set(t["latency_ms"]["100"]) == {"p50", "p99"}, name
        assert all(isinstance(v, float) and v >= 0 for v in t["latency_ms"]["100"].values()), name
        assert isinstance(t["cpu_s_per_1k"], float) and t["cpu_s_per_1k"] >= 0, name
        assert set(t["failover"]) == {"primary_hung", "all_hung"}, name
        assert all(0.0 <= v <= 1.0 for v in t["failover"].values()), name
    assert doc["targets"]["direct"]["cpu_s_per_1k"] == 0.0
    assert doc["targets"]["authgw"]["cpu_s_per_1k"] > 0.0
    assert doc["targets"]["floor"]["cpu_s_per_1k"] > 0.0
    ratio = doc["authgw_cpu_over_floor"]
    assert len(ratio["rounds"]) == 2
    ratios = sorted(r["authgw_cpu_us"] / r["floor_cpu_us"] for r in ratio["rounds"])
    assert (ratio["min"], ratio["max"]) == pytest.approx((ratios[0], ratios[-1]), abs=0.01)  # us rounded
    assert ratio["min"] <= ratio["median"] <= ratio["max"]
    overload = doc["overload"]
    assert set(overload) == {"saturation_rps", "authgw", "authgw-admission"}
    for name in ("authgw", "authgw-admission"):
        assert overload[name]["rate_per_s"] == round(0.2 * overload["saturation_rps"], 1), name
        assert set(overload[name]["goodput_rps"]) == {"median", "min", "max"}, name


def test_cpu_ratio_is_the_median_of_per_round_ratios() -> None:
    """The floor ratio is taken within each round, then the median: not a ratio of medians."""
    rounds = [RatioRound(100.0, 150.0), RatioRound(200.0, 220.0), RatioRound(100.0, 130.0)]
    ratio = CpuRatio(rounds)
    assert ratio.median == 1.3  # per round 1.5, 1.1, 1.3; the ratio of medians would be 150/100
    assert ratio.spread == (1.1, 1.5)
    assert ratio.document()["rounds"][1] == {"floor_cpu_us": 200.0, "authgw_cpu_us": 220.0}
