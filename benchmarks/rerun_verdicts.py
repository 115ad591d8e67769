"""How often the rerun verdict is right on this machine (issue P7's targets).

    .venv/bin/python benchmarks/rerun_verdicts.py [--reruns 20] [--repeats 3] [--threads 1]

1. One original run (resnet-tiny, torch, inference, batch 10, `repeats` processes), then `--reruns`
   unchanged reruns of its report (`repro rerun`): each verdict's class is counted. Target: at
   least 90% reproduced or inconclusive (with advice), never "changed".
2. A planted slowdown, real and measured: `--reruns` runs at a larger batch (13 instead of 10:
   each step does more work; a step also has a fixed cost, so this makes it about 20% slower,
   and the measured ratio is printed), each judged against the original with the verdict's own
   decision (repro.verdict.decide). Target: at least 90% caught ("changed", slower).
Prints the counts, the measured slowdown, and the wall time per rerun.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from repro import verdict

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


def results(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    return {**metrics["summary"], "samples": metrics["samples"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="processes per run")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--planted-batch", type=int, default=13, help="the slower runs' batch")
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
        folder = Path(done.stdout.strip().rsplit(" -> ", 1)[1])
        said = json.loads((folder / "metrics.json").read_text())["rerun"]
        unchanged[said["class"]] += 1
        print(f"rerun {i + 1}: {said['verdict']}", flush=True)

    planted, ratios = collections.Counter(), []
    bigger = args.planted_batch
    for i in range(args.reruns):
        decided = verdict.decide(
            results(original), results(run(runs, bigger, args)), verdict.TOLERANCE
        )
        ratios.append(decided["shift"]["ratio"])
        caught = decided["shift"]["kind"] == "changed" and decided["shift"]["ratio"] > 1
        planted["caught" if caught else decided["class"]] += 1
        print(f"planted {i + 1}: {decided['words']}", flush=True)

    n = args.reruns
    fine = unchanged["reproduced"] + unchanged["inconclusive"]
    print(f"\nunchanged reruns ({n}, {args.repeats} processes each, ±{verdict.TOLERANCE:.0%}):")
    print(f"  {dict(unchanged)}: reproduced or inconclusive {fine / n:.0%}")
    print(f"  wall time per rerun: median {sorted(seconds)[n // 2]:.1f} s")
    print(f"planted slowdown (batch {bigger} instead of {args.batch}; measured step-time ratio")
    print(f"  median {sorted(ratios)[n // 2]:.3f}, {min(ratios):.3f} to {max(ratios):.3f}):")
    print(f"  {dict(planted)}: caught {planted['caught'] / n:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
