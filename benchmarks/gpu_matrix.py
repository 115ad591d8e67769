"""The GPU figures in benchmarks/RESULTS.md: a fixed matrix of ordinary `repro run`s, then a table.

On a GPU machine (unpinned: its own torch and JAX, repro's runtime from `make device-bundle`):

    python3 benchmarks/gpu_matrix.py run --runs-dir runs/gpu [--only vit-huge] [--skip explicit]
    python3 benchmarks/gpu_matrix.py table runs/gpu [more run folders' parents] > table.md

`run` executes the cells one after another (never two at once: they would share the GPU), each a
normal run folder with its report of record, and goes on past a failed cell. `table` reads the
metrics.json of every run folder (status ok only) in the folders given into one Markdown table.
bf16 everywhere; batch sizes are GPU-sized (the workload specs' defaults are sized for a CPU).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from repro import records

BATCH = {  # workload -> (inference batch, training batch)
    "resnet-50": (256, 128),
    "vit-base": (256, 64),
    "vit-huge": (64, 32),
    "gpt2-small": (16, 8),
}
ENGINES = [("torch", "eager"), ("torch", "compile"), ("jax", "jit")]
ATTENTION = {"resnet-50": ["fused"]}  # attention does not apply to ResNet: run once


def cells() -> list[tuple[str, str, dict]]:
    """(workload, framework, params) of every cell, fused attention before explicit."""
    out = []
    for attention in ("fused", "explicit"):
        for workload, (infer, train) in BATCH.items():
            if attention not in ATTENTION.get(workload, ["fused", "explicit"]):
                continue
            for mode, batch in (("inference", infer), ("training", train)):
                for framework, compile_mode in ENGINES:
                    params = {
                        "mode": mode,
                        "batch_size": batch,
                        "precision": "bf16",
                        "compile": compile_mode,
                        "steps": 100 if mode == "inference" else 30,
                        "warmup": 20,
                        "repeats": 1,  # one process per cell: a table of figures, no verdicts
                    }
                    if workload != "resnet-50":
                        params["attention"] = attention
                    out.append((workload, framework, params))
    return out


def name(workload: str, framework: str, params: dict) -> str:
    return " ".join([workload, framework, *(f"{k}={v}" for k, v in params.items())])


def run(args) -> int:
    failed = 0
    todo = [c for c in cells() if all(s in name(*c) for s in args.only)]
    todo = [c for c in todo if not any(s in name(*c) for s in args.skip)]
    for i, (workload, framework, params) in enumerate(todo, 1):
        command = [args.python, "-m", "repro", "run", workload, "-f", framework, "--unpinned"]
        command += ["--python", args.python, "--runs-dir", args.runs_dir]
        for key, value in params.items():
            command += ["-p", f"{key}={value}"]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            code, tail = done.returncode, (done.stdout + done.stderr).strip().splitlines()[-1:]
        except subprocess.TimeoutExpired:
            code, tail = "timeout", [f"over {args.timeout} s"]
        failed += code != 0
        print(
            f"[{i}/{len(todo)}] {time.perf_counter() - start:5.0f} s  exit {code}  "
            f"{name(workload, framework, params)}\n    {' '.join(tail)}",
            flush=True,
        )
    return 1 if failed else 0


def row(metrics: records.Metrics, s: records.Summary) -> list[str]:
    p, mfu = metrics.params, s.mfu
    measured = records.section(s.energy, "gpu").get("status") == "measured"
    joules = s.gpu_joules_per_1000_samples if measured else None
    peak = s.memory.get("device_peak_bytes")
    engine = f"{metrics.framework} {p['compile']}"
    return [
        metrics.workload + (f" T={p['sequence_length']}" if p.get("sequence_length") else ""),
        p["mode"],
        engine,
        p.get("attention", "-") if (metrics.model or {}).get("arch") != "resnet" else "-",
        str(p["batch_size"]),
        f"{s.throughput['samples_per_s']:,.0f}",
        f"{100 * mfu:.1f}%" if mfu is not None else "-",
        f"{joules:,.0f}" if joules is not None else "-",
        f"{peak / 2**30:.1f}" if peak else "-",
        f"{s.first_call_s:.1f}",
        (metrics.started_at or "")[:10],
    ]


def table(args) -> int:
    rows = []
    for path in sorted(p for d in args.runs_dirs for p in Path(d).glob("*/metrics.json")):
        metrics = records.Metrics.from_json(records.read(path), str(path))
        if metrics.status == "ok":
            rows.append(row(metrics, records.Summary.from_json(metrics.summary, str(path))))
    header = ["workload", "mode", "engine", "attention", "batch", "samples/s", "MFU"]
    header += ["J / 1,000 samples", "peak GiB", "first call s", "measured"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in sorted(rows, key=lambda r: (r[:4], int(r[4]))):
        print("| " + " | ".join(r) + " |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="execute the matrix")
    go.add_argument("--python", default=sys.executable, help="the unpinned interpreter")
    go.add_argument("--runs-dir", default="runs/gpu")
    go.add_argument("--only", nargs="*", default=[], help="cells whose name has all of these")
    go.add_argument("--skip", nargs="*", default=[], help="cells whose name has any of these")
    go.add_argument("--timeout", type=float, default=300, help="seconds per cell")
    show = sub.add_parser("table", help="Markdown table of the run folders")
    show.add_argument("runs_dirs", nargs="+")
    args = parser.parse_args()
    return run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
