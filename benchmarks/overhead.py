"""Harness overhead: the throughput `repro run` reports vs a minimal hand-written loop.

For each framework, alternately (so drifts in machine speed hit both alike): a full
`repro run resnet-50` in its pinned kernel, then benchmarks/hand_loop.py in the same kernel with
the same model, batch and settings. Prints each round and the ratio of medians (target >= 0.98).

    .venv/bin/python benchmarks/overhead.py [--frameworks torch jax] [--rounds 3] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from repro import records
from repro.driver import kernels, plan
from repro.paths import ROOT


def repro_run(framework: str, args, runs_dir: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "repro",
        "run",
        "resnet-50",
        "-f",
        framework,
        "-p",
        f"batch_size={args.batch_size}",
        "-p",
        f"steps={args.steps}",
        "-p",
        f"warmup={args.warmup}",
        "--runs-dir",
        runs_dir,
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    latest = max(Path(runs_dir).iterdir(), key=lambda p: p.stat().st_mtime)
    metrics = records.Metrics.from_json(records.read(latest / "metrics.json"), str(latest))
    return records.Summary.from_json(metrics.summary, str(latest)).throughput["samples_per_s"]


def hand_loop(framework: str, args) -> float:
    python = kernels.ensure(f"{framework}-cpu").python
    cmd = [
        python,
        ROOT / "benchmarks" / "hand_loop.py",
        framework,
        args.batch_size,
        args.steps,
        args.warmup,
        json.dumps(plan.workloads()["resnet-50"]["model"]),  # the model `repro run` measures
    ]
    done = subprocess.run(
        [str(c) for c in cmd],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=["torch", "tensorflow", "jax"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    print(
        f"ResNet-50 inference, batch {args.batch_size}, {args.steps} steps, "
        f"{args.rounds} alternating rounds per framework"
    )
    summary = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for framework in args.frameworks:
            ours, hand = [], []
            for round_ in range(1, args.rounds + 1):
                ours.append(repro_run(framework, args, runs_dir))
                hand.append(hand_loop(framework, args))
                print(
                    f"  {framework:<10} round {round_}: repro {ours[-1]:8.2f}  "
                    f"hand-written {hand[-1]:8.2f} samples/s",
                    flush=True,
                )
            ratio = statistics.median(ours) / statistics.median(hand)
            summary.append((framework, statistics.median(ours), statistics.median(hand), ratio))
    print("\nframework   repro (median)  hand-written (median)  ratio  target >= 0.98")
    for framework, ours, hand, ratio in summary:
        verdict = "ok" if ratio >= 0.98 else "BELOW TARGET"
        print(f"{framework:<11} {ours:14.2f}  {hand:21.2f}  {ratio:5.3f}  {verdict}")


if __name__ == "__main__":
    main()
