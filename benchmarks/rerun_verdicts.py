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

import numpy as np

from repro import records, stats
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


def measure(runs: Path, args) -> None:
    """The original, its unchanged reruns (`repro rerun`, into runs/reruns) and the planted
    slowdowns (runs/planted-N.json), all kept in `runs` for `judge`."""
    original = run(runs, args.batch, args)
    print(f"original: {original.name} ({args.repeats} processes)", flush=True)
    for i in range(args.reruns):
        start = time.perf_counter()
        done = repro("rerun", str(original), "--runs-dir", str(runs / "reruns"))
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        print(f"rerun {i + 1}: {time.perf_counter() - start:.0f} s", flush=True)
    for i in range(args.planted):
        (runs / f"planted-{i + 1}.json").write_text(json.dumps(slowed(original, args)))
        print(f"planted {i + 1}: measured", flush=True)


def between_runs(base: verdict.Measured, reruns: list[verdict.Measured]) -> dict:
    """How far unchanged reruns' process-level means scatter, against what their processes'
    spread predicts: tau, the between-run noise no single run can see (log scale, as a CV)."""
    logs = [np.log(stats.medians(r.samples)) for r in reruns]
    means = np.array([x.mean() for x in logs])
    within = np.mean([x.var(ddof=1) / len(x) for x in logs])  # a run mean's variance, predicted
    tau2 = max(0.0, means.var(ddof=1) - within)
    origin = np.log(stats.medians(base.samples)).mean()
    return {
        "scatter": float(np.expm1(means.std(ddof=1))),
        "predicted": float(np.expm1(np.sqrt(within))),
        "tau": float(np.expm1(np.sqrt(tau2))),
        "original_offset": float(np.expm1(origin - means.mean())),
    }


def judge(runs: Path, plant: float) -> None:
    """Every verdict, decided again by this checkout's repro.kernel.verdict.decide from the
    records kept in `runs` (so a change to the rule is judged on the same measurements)."""
    [original] = [p for p in runs.glob("*_resnet-tiny_*") if p.is_dir()]
    base = results(original)
    folders = sorted((runs / "reruns").glob("*_resnet-tiny_*"))
    reruns = [results(p) for p in folders if metrics_of(p).status == "ok"]  # not an interrupted one
    unchanged = collections.Counter()
    for i, rerun in enumerate(reruns):
        decided = verdict.decide(base, rerun, verdict.TOLERANCE)
        unchanged[decided["class"]] += 1
        print(f"rerun {i + 1}: {decided['words']}")
    planted, ratios = collections.Counter(), []
    for i, path in enumerate(sorted(runs.glob("planted-*.json"))):
        slower = json.loads(path.read_text())
        planted_run = (
            verdict.Measured(  # the slowed processes' machine check, the original's figures
                dataclasses.replace(base.summary, machine=slower["machine"]), slower["samples"]
            )
        )
        decided = verdict.decide(base, planted_run, verdict.TOLERANCE)
        ratios.append(decided["shift"]["ratio"])
        caught = decided["class"] == "changed" and decided["shift"]["ratio"] > 1
        planted["caught" if caught else decided["class"]] += 1
        print(f"planted {i + 1}: {decided['words']}")
    n, m = len(reruns), max(1, len(ratios))
    fine = unchanged["reproduced"] + unchanged["inconclusive"]
    print(f"\nunchanged reruns ({n}, ±{verdict.TOLERANCE:.0%}): {dict(unchanged)}")
    print(f"  reproduced or inconclusive: {fine / max(1, n):.0%}")
    if n >= 3:
        spread = between_runs(base, reruns)
        print(
            f"  scatter of the reruns' means {spread['scatter']:.1%} (their processes predict "
            f"{spread['predicted']:.1%}): between-run noise tau {spread['tau']:.1%}; the "
            f"original lies {spread['original_offset']:+.1%} from the reruns' mean"
        )
    if ratios:
        print(f"planted slowdown ({plant:+.0%} of a step spun in each; measured step-time ratio")
        print(f"  median {statistics.median(ratios):.3f}, {min(ratios):.3f} to {max(ratios):.3f}):")
        print(f"  {dict(planted)}: caught {planted['caught'] / m:.0%}")


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
    parser.add_argument("--keep", type=Path, help="the folder to measure into (default: a new one)")
    parser.add_argument("--judge", type=Path, help="only decide again the runs kept in this folder")
    args = parser.parse_args()
    if args.judge:
        judge(args.judge, args.plant)
        return 0
    runs = args.keep or Path(tempfile.mkdtemp(prefix="rerun-verdicts-"))
    runs.mkdir(parents=True, exist_ok=True)
    print(f"measuring into {runs}", flush=True)
    measure(runs, args)
    judge(runs, args.plant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
