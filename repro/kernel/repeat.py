"""More processes for one measurement (in-kernel side): pyperf's "many processes, few values".

A new process moves a whole step-time distribution (memory layout, thread placement, what the
neighbours do), so the spread of steps inside one process understates how far a rerun will land.
With `repeats=N` a run measures N times: once in its kernel, as always, and N-1 more times, each
in a fresh process of the kernel's own interpreter that rebuilds the model from the seed and
follows the same protocol (repro.kernel.measure). The run's verdicts and comparisons rest on the
process-level values (repro.stats).

    python -m repro.kernel.repeat '{"framework": ..., "model": ..., ...}'   # one fresh measurement
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

from repro.kernel import noise

PARAMS = (  # what a fresh process needs to measure exactly what the kernel measured
    "framework",
    "device",
    "threads",
    "omp_wait_policy",
    "seed",
    "precision",
    "deterministic",
    "model",
    "attention",
    "runtime",  # an exported runtime: each process exports and checks its own
    "mode",
    "compile",
    "lr",
    "batch_size",
    "warmup",
    "warmup_time",
    "steps",
    "min_time",
    "data",  # mode=train-to-accuracy (repro.kernel.accuracy)
    "target_accuracy",
    "eval_every",
    "max_steps",
    "max_seconds",
    "new_tokens",
)


def once(p: dict, log=sys.stderr) -> dict:
    """Measure in this process as the template does in its kernel, with the same passes before
    the measurement (the attention probe, the FLOP count): without the FLOP count's forward,
    torch's resnet-tiny steps ran at 4.9 to 6.7 ms in fresh processes against 3.7 to 5.1 ms with
    it (three processes each, 2-core VM), a bias a verdict would read as noise or change."""
    if p["mode"] == "train-to-accuracy":  # train from scratch to the target instead
        from repro.kernel import accuracy

        return accuracy.once(p, log)
    # only what measuring needs: scipy.stats (the report's statistics) took 1 to 4 s to import
    from repro.kernel import machine, measure, models, runtimes

    fw = framework(p)
    net = fw.build(p["model"], p["attention"])
    batch, labels = models.synthetic_batch(models.config(p["model"]), p["batch_size"], p["seed"])
    horizon = 1 + p["warmup"] + p["steps"]
    lr_table = measure.lr_schedule(p["lr"], max(1, horizon // 10), horizon)
    inputs, targets = fw.to_native(batch), fw.to_native(labels)
    if p["mode"] == "inference":
        runtimes.serve(fw, net, p["runtime"], batch, p["model"]["arch"])
    if models.has_attention(p["model"]["arch"]) and p["attention"] == "fused":
        fw.attention_kernel(net, p["model"])
    step = fw.step(
        net,
        inputs,
        targets,
        mode=p["mode"],
        compile=p["compile"],
        lr_table=lr_table,
        new_tokens=p["new_tokens"],
    )
    if p["mode"] != "generate":  # a request's FLOPs are counted analytically (report.flops)
        fw.count_flops(net, inputs, targets, p["mode"])
    with machine.Check() as check:
        m = measure.protocol(
            step,
            fw.sync,
            batch_size=p["batch_size"],
            warmup=p["warmup"],
            warmup_time=p["warmup_time"],
            steps=p["steps"],
            min_time=p["min_time"],
            log=log,
        )
    return {
        "first_call_s": m.first_call_s,
        "warmup_s": list(m.warmup_s),
        "step_s": list(m.step_s),
        "machine": check.result(),
    }


def framework(p: dict):
    """The framework's adapter, set up as the kernel's was (threads, seeds, precision...)."""
    from repro.kernel import frameworks

    return frameworks.load(
        p["framework"],
        device=p["device"],
        threads=p["threads"],
        omp_wait_policy=p["omp_wait_policy"],
        seed=p["seed"],
        precision=p["precision"],
        deterministic=p["deterministic"],
    )


def measure(params: dict, more: int, log=sys.stdout) -> list[dict]:
    """`more` fresh measurements, one process after another (never two at once), as `once`
    returns them, each process's progress shown on `log` as it comes. A process that fails
    stops the run with its error."""
    request = json.dumps({k: params[k] for k in PARAMS})
    command = [sys.executable, "-u", "-m", "repro.kernel.repeat", request]  # -u: lines as they come
    results = []
    for i in range(more):
        start = time.perf_counter()
        result = fresh(command, f"process {i + 2}/{more + 1}", log)
        results.append(result)
        median_ms = 1e3 * statistics.median(result["step_s"])
        reached = result.get("time_to_accuracy", {}).get("time_to_target_s")
        print(
            f"process {i + 2}/{more + 1}: median {median_ms:.1f} ms per step"
            + (f", target reached at {reached:.1f} s" if reached else "")
            + " "
            f"({time.perf_counter() - start:.1f} s with start-up)",
            file=log,
            flush=True,
        )
    return results


def fresh(command: list[str], name: str, log) -> dict:
    """One fresh process's measurement. Its stdout lines are its progress, shown on `log` as
    they come (after `name`), and its result (a JSON object); its stderr (libraries' warnings
    and logs) goes to the run's kernel.log (repro.kernel.noise), its end into the error if it
    fails."""
    print(f"{name}: starting", file=log, flush=True)
    with (
        tempfile.TemporaryFile("w+") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True) as process,
    ):
        said = "null"
        for line in process.stdout:
            if line.startswith("{"):  # its result, a JSON object on one line
                said = line
            elif line.strip() and not noise.noise(line):
                print(f"{name}: {line.rstrip()}", file=log, flush=True)
        process.wait()
        stderr.seek(0)
        errors = stderr.read()
    noise.keep(errors)
    if process.returncode != 0:
        tail = "\n".join(errors.strip().splitlines()[-5:])
        raise RuntimeError(f"repeat {name} failed (exit {process.returncode}):\n{tail}")
    return json.loads(said)


if __name__ == "__main__":  # progress and result on stdout, the libraries' chatter on stderr
    print(json.dumps(once(json.loads(sys.argv[1]), log=sys.stdout)))
