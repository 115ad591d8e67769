"""A saved Keras 3 model on each backend vs repro's native implementation of the same preset.

repro's own Keras ResNet (repro/kernel/models/resnet_keras.py) of a preset is saved once as a
.keras file (in the tensorflow-cpu kernel, random weights), then measured by `repro run` as
`arch: keras` on Keras' torch, JAX and TensorFlow backends, and the same preset natively in torch
(repro's nn.Module), JAX (repro's Flax module) and TensorFlow (repro's Keras model, built rather
than loaded: the control). Same batch, threads, steps and protocol; rounds alternate the runs, so
a drift in machine speed hits all alike. Prints each run's headline, then a markdown table of the
medians over rounds and each backend's Keras / native ratio, and whether the Keras runs recorded
the same outputs (repro.kernel.models.same_outputs).

    .venv/bin/python benchmarks/keras_backends.py [--workload resnet-tiny] [--rounds 2]
        [--modes inference training] [--batch-size 8] [--threads 2] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from repro import records
from repro.driver import plan
from repro.driver.run import run
from repro.kernel import models
from repro.paths import ROOT

sys.path.insert(0, str(ROOT / "tests"))
from conftest import in_kernel  # noqa: E402  (the tests' way into a kernel)

COMPILE = {"torch": "eager", "jax": "jit", "tensorflow": "function"}  # each one's default


def measure(spec: dict, framework: str, params: dict, runs_dir: Path) -> records.Run:
    request = plan.resolve(spec["name"], framework, params, spec=spec, runs_dir=runs_dir)
    with open(os.devnull, "w") as quiet:
        return records.load(run(request, log=quiet).folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="resnet-tiny")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["inference", "training"])
    parser.add_argument("--frameworks", nargs="+", default=["torch", "jax", "tensorflow"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    native = plan.workloads()[args.workload]
    folder = Path(tempfile.mkdtemp(prefix="keras-backends-"))
    file = str(folder / f"{args.workload}.keras")
    saved = in_kernel(
        "tensorflow",
        Path(ROOT / "tests" / "keras_check.py"),
        "resnet",
        json.dumps(native["model"]["config"]),
        file,
    )
    keras = {
        **native,
        "name": f"{args.workload}-keras",
        "model": {"arch": "keras", "config": {"file": file}},
    }
    keras = plan.check_spec(keras, "the saved model's spec")
    print(f"saved {args.workload} with Keras {saved['keras']} to {file}", flush=True)

    figures: dict[tuple, list[float]] = {}
    saved_outputs: dict[str, list] = {}
    for round_ in range(args.rounds):
        for mode in args.modes:
            for framework in args.frameworks:
                for kind, spec in (("keras", keras), ("native", native)):
                    params = {
                        "mode": mode,
                        "batch_size": str(args.batch_size),
                        "threads": str(args.threads),
                        "steps": str(args.steps),
                        "repeats": "1",
                        "compile": COMPILE[framework],
                    }
                    done = measure(spec, framework, params, folder / "runs")
                    figures.setdefault((mode, framework, kind), []).append(
                        done.headline.samples_per_s
                    )
                    if kind == "keras":
                        saved_outputs.setdefault(mode, []).append(done.metrics.model["saved"])
                    print(
                        f"round {round_ + 1} {mode} {framework} {kind}: {done.headline.quote()}"
                        f"  ({done.folder.name})",
                        flush=True,
                    )
    print(
        f"\n{args.workload}, batch {args.batch_size}, {args.threads} threads, {args.steps} steps,"
        f" median of {args.rounds} rounds (samples/s)\n"
    )
    print("| mode | backend | Keras 3 (saved .keras) | repro native | Keras / native |")
    print("|---|---|---|---|---|")
    for mode in args.modes:
        for framework in args.frameworks:
            k = statistics.median(figures[(mode, framework, "keras")])
            n = statistics.median(figures[(mode, framework, "native")])
            print(
                f"| {mode} | {framework} ({COMPILE[framework]}) | {k:,.1f} | {n:,.1f} "
                f"| {k / n:.2f} |"
            )
    for mode, outputs in saved_outputs.items():
        same = models.same_outputs(outputs)
        print(f"\nsame outputs ({mode} runs, every backend and round): {json.dumps(same)}")


if __name__ == "__main__":
    main()
