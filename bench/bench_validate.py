"""Benchmark of `batchsms validate`: throughput beside orjson alone, and peak memory by input size.

    python bench/bench_validate.py [--small N] [--nested N] [--rss 20000,200000]

Throughput is the whole per-line path (read + parse + envelope + plan: validate, canonical bytes,
SHA-256), in process, for `{"speed_limit": N}` lines and for ~1 KB nested bodies, beside
`orjson.loads` alone on the same lines (best of several rounds). Peak RSS is that of a
`python -m batchsms validate FILE` child (with and without `--out`), by `/usr/bin/time -f %M`.
Targets (issue 2): at least 15% of orjson-only speed on small lines; peak RSS within 15 MB for
20 000 and 200 000 lines. Generated files go to a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from batchsms.lines.bodies import Planned, checked_lines

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


def throughput(path: Path, rounds: int) -> tuple[float, float]:
    """(lines/s of the whole path, lines/s of orjson.loads alone) on the lines of `path`."""
    lines = path.read_bytes().splitlines()
    loads = orjson.loads

    def orjson_only() -> int:
        for raw in lines:
            loads(raw)
        return len(lines)

    def whole_path() -> int:  # what `validate` and `run` do per line
        return sum(1 for item in checked_lines(str(path), {}) if isinstance(item, Planned))

    t_orjson, n = best_of(rounds, orjson_only)
    t_path, planned = best_of(rounds, whole_path)
    if planned != n:
        raise SystemExit(f"benchmark input is not all valid: {planned} of {n} lines planned")
    return n / t_path, n / t_orjson


def peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of one `batchsms validate` child, in MB.

    Measured by `/usr/bin/time -f %M` when it exists: a child forked straight from this (large)
    process would report this process's RSS as its own peak, since Linux carries the high-water
    mark across fork and exec. Without it, `os.wait4` on a direct child is the fallback.
    """
    cmd = [sys.executable, "-m", "batchsms", "validate", *args]
    timer = Path("/usr/bin/time")
    if timer.exists():
        proc = subprocess.run([str(timer), "-f", "peak_kib=%M", *cmd], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"validate {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return int(proc.stderr.rsplit("peak_kib=", 1)[1]) / 1024
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"validate {' '.join(args)} exited {child.returncode}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200_000, help="small lines for throughput")
    parser.add_argument("--nested", type=int, default=40_000, help="~1 KB lines for throughput")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss", default="20000,200000", help="line counts for peak RSS")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-batchsms-") as tmp:
        tmpdir = Path(tmp)
        print(f"python {sys.version.split()[0]}, orjson {orjson.__version__}")
        print("\nthroughput (read + parse + envelope + validate + canonical bytes + sha256)")
        results = {}
        for kind, make, n in (("small", small_line, args.small),
                              ("nested", nested_line, args.nested)):
            path = write_lines(tmpdir / f"{kind}.jsonl", make, n)
            size = path.stat().st_size / n
            ours, theirs = throughput(path, args.rounds)
            results[kind] = ours / theirs
            print(f"  {kind:6s} {n:>7} lines, {size:6.0f} B/line: {ours:>10,.0f} lines/s   "
                  f"orjson.loads alone {theirs:>12,.0f} lines/s   ratio {ours / theirs:6.1%}")
        verdict = "met" if results["small"] >= RATIO_TARGET else "MISSED"
        print(f"  target: small-line ratio >= {RATIO_TARGET:.0%}: {verdict}")

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


if __name__ == "__main__":
    main()
