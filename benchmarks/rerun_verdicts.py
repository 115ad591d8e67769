"""How often the rerun verdict is right on this machine (issue P7's targets).

    .venv/bin/python benchmarks/rerun_verdicts.py [--reruns 20] [--planted 10] [--repeats 8]

1. One original run (resnet-tiny, torch, inference, batch 10, one thread, `repeats` processes),
   then `--reruns` unchanged reruns of its report (`repro rerun`): each verdict's class is
   counted. Target: at least 90% reproduced or inconclusive (with advice), never "changed".
2. A planted slowdown, real and exactly sized: `--planted` runs of `repeats` fresh processes
   whose every step also spins the CPU for `--plant` times the original's median step
   (benchmarks/slowed_process.py), each judged against the original with the verdict's own
   decision (repro.kernel.verdict.decide). Target: at least 90% caught ("changed", slower).
Prints the counts, the measured slowdown, and the wall time per rerun.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from repro import records
from repro.kernel import repeat, verdict
from repro.paths import KERNELS

ROOT = Path(__file__).resolve().parents[1]


def repro(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True)


def run(runs: Path, batch: int, args) -> Path:
    before = set(runs.glob("*_resnet-tiny_*"))
    params = [f"batch_size={batch}", f"repeats={args.repeats}", f"threads={args.threads}"]
    params += ["steps=30", "warmup=20"]
    done = repro("run", "resnet-tiny", "-f", "torch", *sum((["-p", p] for p in params), []),
                 "--runs-dir", str(runs))  # fmt: skip
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    [folder] = set(runs.glob("*_resnet-tiny_*")) - before
    return folder


def metrics_of(folder: Path) -> records.Metrics:
    path = folder / "metrics.json"
    return records.Metrics.from_json(records.read(path), str(path))


def results(folder: Path) -> verdict.Measured:
    return verdict.record(metrics_of(folder))


def slowed(original: Path, args) -> dict:
    """`args.repeats` fresh processes of the original's measurement, each step spinning for
    `args.plant` times the original's median step: results as the verdict reads them."""
    metrics = metrics_of(original)
    model = {k: metrics.model[k] for k in ("arch", "config")}
    request = {**metrics.params, "framework": metrics.framework, "model": model}
    request = json.dumps({k: request[k] for k in repeat.PARAMS})
    extra = args.plant * statistics.median(metrics.step_s)
    python = KERNELS / metrics.kernel / "bin" / "python"
    processes = []
    for _ in range(args.repeats):
        done = subprocess.run(
            [python, ROOT / "benchmarks" / "slowed_process.py", request, str(extra)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        processes.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"machine": processes[0]["machine"], "samples": {"processes": processes}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=20, help="unchanged reruns")
    parser.add_argument("--planted", type=int, default=10, help="runs with a planted slowdown")
    parser.add_argument("--repeats", type=int, default=8, help="processes per run")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--plant", type=float, default=0.20, help="the planted slowdown")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="one thread by default: with two on this 2-core VM, a process's steps settled "
        "at about 4.0 or about 6.3 ms, by chance (the threads' placement), a noise a verdict "
        "can only call inconclusive",
    )
    args = parser.parse_args()
    runs = Path(tempfile.mkdtemp(prefix="rerun-verdicts-"))
    original = run(runs, args.batch, args)
    print(f"original: {original.name} ({args.repeats} processes)", flush=True)

    unchanged, seconds = collections.Counter(), []
    for i in range(args.reruns):
        start = time.perf_counter()
        done = repro("rerun", str(original), "--runs-dir", str(runs / "reruns"))
        seconds.append(time.perf_counter() - start)
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        [folder] = [Path(line.split(": ", 1)[1]) for line in done.stdout.splitlines()
                    if line.strip().startswith("folder: ")]  # fmt: skip
        said = metrics_of(folder).rerun
        unchanged[said["class"]] += 1
        print(f"rerun {i + 1}: {said['verdict']}", flush=True)

    planted, ratios = collections.Counter(), []
    for i in range(args.planted):
        slower = slowed(original, args)  # kept beside the runs, to decide again later
        (runs / f"planted-{i + 1}.json").write_text(json.dumps(slower))
        base = results(original)  # the slowed processes' machine check, the original's figures
        planted_run = verdict.Measured(
            dataclasses.replace(base.summary, machine=slower["machine"]), slower["samples"]
        )
        decided = verdict.decide(base, planted_run, verdict.TOLERANCE)
        ratios.append(decided["shift"]["ratio"])
        caught = decided["class"] == "changed" and decided["shift"]["ratio"] > 1
        planted["caught" if caught else decided["class"]] += 1
        print(f"planted {i + 1}: {decided['words']}", flush=True)

    n = args.reruns
    fine = unchanged["reproduced"] + unchanged["inconclusive"]
    print(f"\nunchanged reruns ({n}, {args.repeats} processes each, ±{verdict.TOLERANCE:.0%}):")
    print(f"  {dict(unchanged)}: reproduced or inconclusive {fine / n:.0%}")
    print(f"  wall time per rerun: median {sorted(seconds)[n // 2]:.1f} s")
    print(f"planted slowdown ({args.plant:+.0%} of a step spun in each; measured step-time ratio")
    print(f"  median {statistics.median(ratios):.3f}, {min(ratios):.3f} to {max(ratios):.3f}):")
    print(f"  {dict(planted)}: caught {planted['caught'] / args.planted:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
