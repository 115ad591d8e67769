"""repro against optimum-benchmark and a bare loop, on one Hugging Face model (issue P14, item 6).

    .venv/bin/python benchmarks/vs_optimum.py --optimum-python /tmp/ob-venv/bin/python \
        [--model bert-base] [--batch 8] [--sequence 128] [--threads 2] [--rounds 3]

The model: a transformers config of the named size saved with seeded random weights
(`save_pretrained`, nothing downloaded) into a temporary folder, loaded by all three as
`pretrained` from there. Each round, alternately, on the same cores and thread count:
- repro: `repro run <spec>` with `model: {source: hf:<dir>, weights: pretrained}`; its figure is
  the run's headline step time (records.Metrics, the one every view quotes);
- optimum-benchmark (its pytorch backend, inference scenario, latency on, the same batch and
  sequence length, inline launcher): the forward latency's p50 and mean;
- a bare loop in the torch-cpu kernel: `model(ids).logits` under `torch.inference_mode()`,
  `--steps` times after a warm-up; its median.
optimum-benchmark is installed in a venv of its own:
    python3.11 -m venv /tmp/ob-venv && /tmp/ob-venv/bin/pip install torch==2.13.0 \
        optimum-benchmark==0.6.0 'transformers<5' 'datasets<4.3'
(the same torch build as the torch-cpu kernel; optimum-benchmark 0.6.0, the latest, does not
import with transformers 5: SpecialTokensMixin is gone; so that venv has 4.57 where the kernel has
5.25, and the bare loop runs in both to show what the transformers release alone changes; this
script installs nothing). Threads are set for
all three by the environment (OMP_NUM_THREADS) and the cores by `taskset`: optimum-benchmark
0.6.0's pytorch backend passes `inter_op_num_threads` to `torch.set_num_threads` and
`intra_op_num_threads` to `torch.set_num_interop_threads` (swapped), so its options are left unset.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from repro import records
from repro.paths import KERNELS

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # transformers config class and fields: sequence classification, 2 labels
    "bert-base": ("BertConfig", {"num_labels": 2}),
    "bert-mini": (
        "BertConfig",
        {
            "num_labels": 2,
            "hidden_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "intermediate_size": 1024,
        },
    ),  # fmt: skip
}

SAVE = """
import sys, torch, transformers
name, fields, out = sys.argv[1], __import__("json").loads(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
config = getattr(transformers, name)(**fields)
transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
"""

BARE = """
import json, statistics, sys, time, torch, transformers
directory, batch, sequence, steps = sys.argv[1], *map(int, sys.argv[2:5])
model = transformers.AutoModelForSequenceClassification.from_pretrained(directory).eval()
ids = torch.randint(0, model.config.vocab_size, (batch, sequence), generator=torch.manual_seed(0))
times = []
with torch.inference_mode():
    for i in range(steps + 10):
        start = time.perf_counter()
        model(ids).logits
        if i >= 10:
            times.append(time.perf_counter() - start)
print(json.dumps({"median_ms": 1e3 * statistics.median(times), "torch": torch.__version__,
                  "transformers": transformers.__version__}))
"""

OPTIMUM = """
import json, sys
from optimum_benchmark import Benchmark, BenchmarkConfig, InferenceConfig, InlineConfig
from optimum_benchmark import PyTorchConfig
directory, (batch, sequence, seconds) = sys.argv[1], map(int, sys.argv[2:5])
config = BenchmarkConfig(
    name="vs-repro",
    launcher=InlineConfig(),
    scenario=InferenceConfig(latency=True, memory=False, duration=seconds, iterations=10,
                             warmup_runs=10, input_shapes={"batch_size": batch,
                                                           "sequence_length": sequence}),
    backend=PyTorchConfig(model=directory, device="cpu", task="text-classification"),
)
report = Benchmark.launch(config)
latency = report.forward.latency
print(json.dumps({"p50_ms": 1e3 * latency.p50, "mean_ms": 1e3 * latency.mean,
                  "count": len(latency.values)}))
"""


def pinned(threads: int) -> tuple[list[str], dict]:
    cores = sorted(os.sched_getaffinity(0))[:threads]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return ["taskset", "-c", ",".join(map(str, cores))], env


def last_json(command: list, env: dict) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{command[:4]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def repro_run(spec: Path, runs: Path, threads: int, seconds: float, env: dict) -> dict:
    before = set(runs.glob("*"))
    params = [f"threads={threads}", f"min_time={seconds}", "repeats=4"]
    done = subprocess.run(
        [sys.executable, "-m", "repro", "run", str(spec), "-f", "torch", "--runs-dir", str(runs),
         *sum((["-p", p] for p in params), [])],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if done.returncode:
        sys.exit(f"repro run failed:\n{done.stderr[-3000:]}")
    [folder] = set(runs.glob("*")) - before
    metrics = records.Metrics.from_json(records.read(folder / "metrics.json"), str(folder))
    return {"step_ms": metrics.headline.step_ms, "folder": folder.name}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimum-python", required=True, type=Path)
    parser.add_argument("--model", choices=SIZES, default="bert-base")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="measured per tool and round")
    parser.add_argument("--steps", type=int, default=30, help="the bare loop's timed forwards")
    args = parser.parse_args()
    kernel = KERNELS / "torch-cpu" / "bin" / "python"
    work = Path(tempfile.mkdtemp(prefix="vs-optimum-"))
    directory = work / args.model
    name, fields = SIZES[args.model]
    last_json([kernel, "-c", SAVE + "print('{}')", name, json.dumps(fields), str(directory)], {
        **os.environ})  # fmt: skip
    spec = work / "spec.yaml"
    spec.write_text(
        f"name: vs-optimum\ntask: sequence-classification\npreset: user\n"
        f"model: {{source: 'hf:{directory}', weights: pretrained}}\nbatch_size: {args.batch}\n"
        f"sequence_length: {args.sequence}\nprecision: fp32\nmode: inference\n"
    )
    taskset, env = pinned(args.threads)
    rows = []
    for round_ in range(1, args.rounds + 1):
        ours = repro_run(spec, work / "runs", args.threads, args.seconds, env)
        theirs = last_json(
            [*taskset, args.optimum_python, "-c", OPTIMUM, str(directory), str(args.batch),
             str(args.sequence), str(args.seconds)], env,
        )  # fmt: skip
        bare, beside = (
            last_json(
                [
                    *taskset,
                    python,
                    "-c",
                    BARE,
                    str(directory),
                    str(args.batch),
                    str(args.sequence),
                    str(args.steps),
                ],
                env,
            )  # fmt: skip
            for python in (kernel, args.optimum_python)
        )
        row = (ours["step_ms"], theirs["p50_ms"], theirs["mean_ms"], bare["median_ms"])
        rows.append((*row, beside["median_ms"]))
        print(
            f"round {round_}: repro {ours['step_ms']:.2f} ms ({ours['folder']}), optimum p50 "
            f"{theirs['p50_ms']:.2f} / mean {theirs['mean_ms']:.2f} ms ({theirs['count']} "
            f"forwards), bare loop {bare['median_ms']:.2f} ms (in optimum's venv: "
            f"{beside['median_ms']:.2f} ms, transformers {beside['transformers']})",
            flush=True,
        )
    ours, p50, mean, bare, beside = (statistics.median(c) for c in zip(*rows, strict=True))
    print(
        f"\n{args.model}, batch {args.batch} x {args.sequence} tokens, {args.threads} threads, "
        f"fp32, {args.rounds} alternating rounds (medians): repro {ours:.2f} ms, optimum-benchmark "
        f"p50 {p50:.2f} ms (mean {mean:.2f}), bare loop {bare:.2f} ms (in optimum's venv "
        f"{beside:.2f} ms)\n"
        f"repro / optimum p50 {ours / p50:.3f}; bare loop / repro {bare / ours:.3f} "
        "(harness overhead: >= 0.99 means repro adds under 1%); bare loop in optimum's venv / "
        f"optimum p50 {beside / p50:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
