"""Benchmark of `batchsms validate`: throughput beside orjson alone, and peak memory by input size.

    python bench/bench_validate.py [--inputs N] [--small N] [--nested N] [--rss 20000,200000]
    python bench/bench_validate.py --quick      # smoke test, ~3 s, goals printed, not asserted

Throughput is the whole per-line path (read + parse + envelope + plan: validate, canonical bytes,
SHA-256), in process, beside `orjson.loads` alone on the same lines (best of several rounds), for:

- `inputs`: the repository's sample inputs (`inputs/*.jsonl`, 65 lines: a fleet-wide speed limit,
  speed-limit rules, two nested retargets, seven typical mistakes, one of them not JSON), repeated
  verbatim to N lines. Issue 22's goal 4 is judged here: >= 0.25x orjson.loads. The repeated
  bodies are what a fleet-wide change looks like, so the planner's verdict memo serves most of
  them (bodies.py); the speed-limit lines are checked in full every time;
- `small`: distinct `{"speed_limit": N}` lines (issue 2's target: >= 15%);
- `nested`: ~1 KB nested bodies, all distinct (no memo).

Peak RSS is that of a `python -m batchsms validate FILE` child (with and without `--out`), by
`/usr/bin/time -f %M`: within 15 MB for 20 000 and 200 000 lines (issue 2). Generated files go
to a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from goals import goal_line
from goals import peak_rss_mb as child_peak_rss_mb

from batchsms.lines.bodies import Planned, checked_lines

INPUTS = Path(__file__).resolve().parent.parent / "inputs"
INPUTS_TARGET = 0.25  # issue 22, goal 4
RATIO_TARGET = 0.15
RSS_TARGET_MB = 15.0


def small_line(i: int) -> bytes:
    return orjson.dumps({"task_id": f"ef3b9722-07a0-40ae-{i:012x}",
                         "body": {"speed_limit": i % 1001}, "ref": f"web-{i}"})


def nested_body(i: int) -> dict[str, Any]:
    ip = f"10.{i // 62500 % 250}.{i // 250 % 250}.{i % 250 + 1}"
    return {
        "name": f"web-{i}", "speed_limit": 100 + i % 900, "migration_ip": ip,
        "target_server": {
            "vm_id": f"5d1e4c2a-0000-4000-8000-{i:012x}", "os_type": "LINUX", "firmware": "BIOS",
            "cpu_quantity": 4, "memory": 8192, "flavor": "s6.xlarge.2",
            "networks": [{"name": "eth0", "ip": ip, "netmask": "255.255.255.0",
                          "gateway": "10.0.0.1", "mtu": 1500, "mac": "fa:16:3e:00:01:01"}],
            "disks": [{"name": "/dev/vda", "disk_id": f"vol-{i:08d}", "device_use": "OS",
                       "os_disk": True, "partition_style": "MBR", "size": 53687091200,
                       "used_size": 21474836480,
                       "physical_volumes": [{
                           "name": "/dev/vda1", "index": 1, "device_use": "BOOT",
                           "file_system": "ext4", "mount_point": "/boot", "size": 1073741824,
                           "used_size": 209715200, "free_size": 864026624,
                           "uuid": "0a1b2c3d-0000-4000-8000-000000000001"}]}],
        },
    }


def nested_line(i: int) -> bytes:
    return orjson.dumps({"task_id": f"ef3b9722-07a0-40ae-{i:012x}", "body": nested_body(i),
                         "ref": f"srv-{i}"})


def write_lines(path: Path, make: Callable[[int], bytes], n: int) -> Path:
    with path.open("wb") as f:
        batch: list[bytes] = []
        for i in range(n):
            batch.append(make(i))
            if len(batch) == 10_000:
                f.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            f.write(b"\n".join(batch) + b"\n")
    return path


def best_of(rounds: int, fn: Callable[[], int]) -> tuple[float, int]:
    """Shortest wall time of `rounds` runs, and what fn counted."""
    best, count = float("inf"), 0
    for _ in range(rounds):
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return best, count


def inputs_line_maker() -> Callable[[int], bytes]:
    """Line i of the sample inputs repeated: inputs/*.jsonl in name order, blank lines left out."""
    sample = [raw for path in sorted(INPUTS.glob("*.jsonl"))
              for raw in path.read_bytes().splitlines() if raw.strip()]
    return lambda i: sample[i % len(sample)]


def throughput(path: Path, rounds: int, *, all_valid: bool = True) -> tuple[float, float]:
    """(lines/s of the whole path, lines/s of orjson.loads alone) on the lines of `path`."""
    lines = path.read_bytes().splitlines()
    loads = orjson.loads
    error = orjson.JSONDecodeError

    def orjson_only() -> int:
        for raw in lines:
            try:
                loads(raw)
            except error:  # one of inputs/'s mistakes is not JSON
                continue
        return len(lines)

    def whole_path() -> int:  # what `validate` and `run` do per line
        return sum(1 for item in checked_lines(str(path), {}) if isinstance(item, Planned))

    t_orjson, n = best_of(rounds, orjson_only)
    t_path, planned = best_of(rounds, whole_path)
    if all_valid and planned != n:
        raise SystemExit(f"benchmark input is not all valid: {planned} of {n} lines planned")
    return n / t_path, n / t_orjson


def peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of one `batchsms validate` child, in MB (goals.peak_rss_mb)."""
    return child_peak_rss_mb([sys.executable, "-m", "batchsms", "validate", *args])[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=200_000,
                        help="lines of inputs/ (repeated) for throughput: goal 4")
    parser.add_argument("--small", type=int, default=200_000, help="small lines for throughput")
    parser.add_argument("--nested", type=int, default=40_000, help="~1 KB lines for throughput")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss", default="20000,200000", help="line counts for peak RSS")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: few lines, one round, goals printed, never asserted")
    args = parser.parse_args()
    if args.quick:
        args.inputs, args.small, args.nested, args.rounds = 5_000, 5_000, 1_000, 1
        args.rss = "1000,5000"

    with tempfile.TemporaryDirectory(prefix="bench-batchsms-") as tmp:
        tmpdir = Path(tmp)
        print(f"python {sys.version.split()[0]}, orjson {orjson.__version__}")
        print("\nthroughput (read + parse + envelope + validate + canonical bytes + sha256)")
        results = {}
        for kind, make, n in (("inputs", inputs_line_maker(), args.inputs),
                              ("small", small_line, args.small),
                              ("nested", nested_line, args.nested)):
            path = write_lines(tmpdir / f"{kind}.jsonl", make, n)
            size = path.stat().st_size / n
            ours, theirs = throughput(path, args.rounds, all_valid=kind != "inputs")
            results[kind] = ours / theirs
            print(f"  {kind:6s} {n:>7} lines, {size:6.0f} B/line: {ours:>10,.0f} lines/s   "
                  f"orjson.loads alone {theirs:>12,.0f} lines/s   ratio {ours / theirs:6.1%}",
                  flush=True)
        verdict = "met" if results["small"] >= RATIO_TARGET else "MISSED"
        print(f"  target (issue 2): small-line ratio >= {RATIO_TARGET:.0%}: {verdict}")
        met = results["inputs"] >= INPUTS_TARGET
        print(f"  goal (issue 22): inputs/ ratio >= {INPUTS_TARGET:.2f}x: "
              f"{'met' if met else 'MISSED'}")
        print(goal_line("4", f"{results['inputs']:.3f}x orjson.loads "
                        f"({args.inputs} inputs/ lines, best of {args.rounds})",
                        f">= {INPUTS_TARGET:.2f}x", met))

        print("\npeak RSS of `python -m batchsms validate FILE` (small lines)")
        sizes = [int(s) for s in args.rss.split(",")]
        for extra in ([], ["--out"]):
            peaks = []
            for n in sizes:
                path = write_lines(tmpdir / f"rss-{n}.jsonl", small_line, n)
                cmd = [str(path)]
                if extra:
                    out = tmpdir / f"outcomes-{n}.jsonl"
                    out.unlink(missing_ok=True)
                    cmd += ["--out", str(out)]
                peaks.append(peak_rss_mb(cmd))
                label = "with --out" if extra else "no --out  "
                print(f"  {label} {n:>7} lines: {peaks[-1]:7.1f} MB")
            diff = max(peaks) - min(peaks)
            verdict = "met" if diff <= RSS_TARGET_MB else "MISSED"
            print(f"  difference {diff:5.1f} MB (target <= {RSS_TARGET_MB:.0f} MB): {verdict}")
    return 0 if args.quick or met else 1


if __name__ == "__main__":
    raise SystemExit(main())
