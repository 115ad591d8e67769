"""Throughput against threads and OpenMP's wait policy, on a quiet machine and beside busy loops.

Each cell is one fresh measurement (repro.kernel.repeat.once, what a run's extra processes do) in
the framework's pinned kernel, with the cell's `threads` and `omp_wait_policy` (unset: OpenMP's
own default, what runs did before repro set one), beside 0 or `--load` (default: one per core)
`python -c 'while 1: pass'` busy loops of ours, on top of whatever else the machine runs (the
table says how much that was). Cells run round by round, shuffled within a block, so a drift in
the other load spreads over all of them; a cell's figure is the median over rounds.

    .venv/bin/python benchmarks/threads_under_load.py [--frameworks torch jax tensorflow]
        [--threads 1 2] [--policies unset passive active] [--rounds 2] [--batch-size 4]
        [--workload resnet-tiny] [--steps 20] [--warmup 10] [--load N] [--loads 0 2]
        [--json out.jsonl] [--table out.jsonl ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from repro.driver import plan
from repro.kernel import repeat
from repro.paths import ROOT

KERNELS = os.environ.get("REPRO_KERNELS_DIR", str(ROOT / ".kernels"))


def request(workload: str, framework: str, threads: int, policy: str, args) -> str:
    """A repeat process's request: the plan a `repro run` with these parameters would make."""
    given = {
        "threads": str(threads),
        "omp_wait_policy": policy,
        "batch_size": str(args.batch_size),
        "steps": str(args.steps),
        "warmup": str(args.warmup),
        "min_time": "0",  # exactly `steps`, warm-up bounded by `warmup` alone: as the README's
        "warmup_time": str(plan.FORMERLY["warmup_time"]),  # table was measured
    }
    params = plan.resolve(workload, framework, given).notebook_parameters({})
    return json.dumps({k: params[k] for k in repeat.PARAMS})


def measure(framework: str, threads: int, policy: str, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_WAIT_POLICY", None)  # unset: OpenMP's own default, not this shell's
    python = f"{KERNELS}/{framework}-cpu/bin/python"
    ask = request(args.workload, framework, threads, policy, args)
    cmd = [python, "-m", "repro.kernel.repeat", ask]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    median = statistics.median(result["step_s"])
    return {
        "samples_per_s": args.batch_size / median,
        "median_ms": 1e3 * median,
        "other_cores": result["machine"]["load"].get("other_cores"),
    }


def busy_loops(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(n)]


KEYS = ("load", "framework", "threads", "omp_wait_policy")  # a cell; its rows in --json


def table(rows: list[dict]) -> None:
    """Each cell's median samples/s over its rounds, their range, and the other processes' load
    (repro's machine check, cores on average over the measured window)."""
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault(tuple(row[k] for k in KEYS), []).append(row)
    print("| busy loops | framework | threads | omp_wait_policy | samples/s (range) | others |")
    print("|---|---|---|---|---|---|")
    order = ("unset", "passive", "active")
    for cell, ms in sorted(cells.items(), key=lambda c: (*c[0][:3], order.index(c[0][3]))):
        sps = sorted(m["samples_per_s"] for m in ms)
        other = statistics.median(m["other_cores"] for m in ms)
        print(
            f"| {' | '.join(map(str, cell))} | **{statistics.median(sps):,.0f}** "
            f"({sps[0]:,.0f}–{sps[-1]:,.0f}) | {other:.1f} cores |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=["torch", "jax", "tensorflow"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--policies", nargs="+", default=["unset", "passive", "active"])
    parser.add_argument("--load", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--loads", nargs="+", type=int, help="busy loops per block (0 and --load)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workload", default="resnet-tiny")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", help="append every measurement here, one JSON object a line")
    parser.add_argument("--table", nargs="+", help="only print the table of these --json files")
    args = parser.parse_args()
    if args.table:
        lines = [line for path in args.table for line in Path(path).read_text().splitlines()]
        table([json.loads(line) for line in lines])
        return

    loads = args.loads if args.loads is not None else [0, args.load]
    cells = [
        (load, fw, t, p)
        for load in loads
        for fw in args.frameworks
        for t in args.threads
        for p in args.policies
    ]
    print(f"start: {os.getloadavg()[0]:.2f} load average, {os.cpu_count()} CPUs", flush=True)
    rows = []
    for r in range(args.rounds):
        for load in loads:  # the busy loops run for a whole block of cells
            block = [c for c in cells if c[0] == load]
            random.shuffle(block)
            loops = busy_loops(load)
            try:
                for cell in block:
                    start = time.perf_counter()
                    m = measure(*cell[1:], args)
                    row = dict(zip(KEYS, cell, strict=True)) | m
                    rows.append(row | {"round": r, "load_average_1m": os.getloadavg()[0]})
                    print(
                        f"round {r + 1}, {load} busy loops, {' '.join(map(str, cell[1:]))}: "
                        f"{m['samples_per_s']:.1f} samples/s, median {m['median_ms']:.2f} ms, "
                        f"other processes {m['other_cores']:.2f} cores "
                        f"({time.perf_counter() - start:.0f} s)",
                        flush=True,
                    )
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(rows[-1]) + "\n")
            finally:
                for p in loops:
                    p.kill()
                    p.wait()
    print(f"\n{args.workload}, batch {args.batch_size}: median of {args.rounds} rounds")
    table(rows)


if __name__ == "__main__":
    main()
